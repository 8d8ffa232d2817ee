# The README's two commands: `make demo` and `make test`. Each creates or reuses .venv in the repo,
# installs the package (with the CPU pins of constraints-cpu.txt) and runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.advface-installed
SOURCES := setup.py pyproject.toml constraints-cpu.txt $(wildcard csrc/*)

.PHONY: demo test test-fast lint docs bench install clean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) $(SOURCES)
	$(PY) -m pip install -q -c constraints-cpu.txt -e ".[test,onnx,sface,tflite,triton,bench,dev,ray,eval,judge,serve,faiss,postgres]"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/advface-fast demo

# every test (CI runs this), with the slowest 25 listed at the end
test: $(STAMP)
	$(PY) -m pytest -q tests --durations=25

# the development loop: no slow, server or GPU tests (markers in pyproject.toml; about a minute)
test-fast: $(STAMP)
	$(PY) -m pytest -q tests -m "not slow and not server and not gpu" --durations=10

lint: $(STAMP)
	$(VENV)/bin/ruff check advface_fast kernels tests benchmarks docs csrc setup.py
	$(VENV)/bin/ruff format --check advface_fast kernels tests benchmarks docs csrc setup.py

# the result tables in docs/ from the committed results.json files (tests/test_docs.py checks them)
docs: $(STAMP)
	$(PY) docs/generate.py

# the CPU benchmark suite, with the real torchattacks/advertorch beside the "-style" loops, then the
# README's performance section from the results
bench: $(STAMP)
	$(PY) -m pip install -q --no-deps -r benchmarks/requirements-real-packages.txt
	cd benchmarks && $(abspath $(PY)) -m pytest test_bench_cpu.py -q -p no:cacheprovider > results/cpu_bench.log; \
	  status=$$?; head -12 results/cpu_bench.log; exit $$status
	$(PY) benchmarks/perf_report.py

clean:
	rm -rf $(VENV) build *.egg-info advface_fast/_C*.so
