# The README's two commands: `make demo` and `make test`. Each creates or reuses .venv in the repo,
# installs the package (with the CPU pins of constraints-cpu.txt) and runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.advface-installed
SOURCES := setup.py pyproject.toml constraints-cpu.txt $(wildcard csrc/*)

.PHONY: demo test lint bench install clean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) $(SOURCES)
	$(PY) -m pip install -q -c constraints-cpu.txt -e ".[test,onnx,sface,tflite,triton,bench,dev,ray,eval,judge,serve,faiss,postgres]"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/advface-fast demo

test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check advface_fast kernels tests benchmarks csrc setup.py
	$(VENV)/bin/ruff format --check advface_fast kernels tests benchmarks csrc setup.py

# the CPU benchmark suite, with the real torchattacks/advertorch beside the "-style" loops, then the
# README's performance section from the results
bench: $(STAMP)
	$(PY) -m pip install -q --no-deps -r benchmarks/requirements-real-packages.txt
	cd benchmarks && $(abspath $(PY)) -m pytest test_bench_cpu.py -q -p no:cacheprovider > results/cpu_bench.log; \
	  status=$$?; head -12 results/cpu_bench.log; exit $$status
	$(PY) benchmarks/perf_report.py

clean:
	rm -rf $(VENV) build *.egg-info advface_fast/_C*.so
