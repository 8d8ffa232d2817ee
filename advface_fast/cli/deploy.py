"""The deployment commands of the CLI: ``serve``, ``protect-table``, ``index``."""

from __future__ import annotations

import argparse
import os
import sys
import time

from .protect_options import add_setting_args, gallery_ids, load_models, setting_kwargs


def _read_secret(path: str, what: str) -> str:
    from pathlib import Path

    from ..keys import check_key_file_mode

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path}")
    check_key_file_mode(Path(path))  # a token others can read is a token others hold
    with open(path, encoding="utf-8") as f:
        token = f.read().strip()
    if len(token) < 16:
        raise ValueError(f"{what} in {path} is shorter than 16 characters; use a long random token")
    return token


def _serve(args: argparse.Namespace) -> int:
    from ..deploy.service import ServiceConfig, start_service
    from ..keys import load_key

    decoder, _ = load_models(args)  # checks --encoder against the decoder; replicas build their own
    kwargs = setting_kwargs(args)
    key_file = kwargs.pop("key")
    key = load_key(key_file)
    api_key = _read_secret(args.api_key_file, "API key")
    if os.path.samefile(key_file, args.api_key_file) or api_key.encode() in (key, key.hex().encode()):
        raise ValueError(
            f"--api-key-file {args.api_key_file} holds the protection key: every enrolment client would hold the "
            "secret that keys the gallery's noise and rotation; give clients their own token"
        )
    cfg = ServiceConfig(
        max_batch_requests=args.max_batch,
        batch_wait_s=args.batch_wait_ms / 1000,
        max_rows=args.max_rows,
        max_body_bytes=args.max_body_mb << 20,
        num_replicas=args.replicas,
        cpus_per_replica=args.cpus_per_replica,
        protect_kwargs=kwargs,
    )
    url = start_service(
        decoder,
        args.encoder,
        key,
        api_key,
        cfg,
        host=args.host,
        port=args.port,
        address=args.address,
    )
    print(f"serving on {url} (POST /protect, GET /healthz, GET /stats); Ctrl-C stops", file=sys.stderr)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping the service", file=sys.stderr)
    finally:
        from ray import serve

        serve.shutdown()
    return 0


def _protect_table(args: argparse.Namespace) -> int:
    from ..deploy.postgres_table import protect_table
    from ..protector import Protector

    decoder, encoder = load_models(args)
    prot = Protector(decoder, encoder, progress=False, **setting_kwargs(args))
    res = protect_table(
        args.dsn,
        args.table,
        prot,
        column=args.column,
        id_column=args.id_column,
        batch_rows=args.batch_rows,
        max_rows=args.max_rows,
        progress=not args.no_progress,
    )
    what = "continued" if res.resumed else "protected"
    print(
        f"{what} {args.table}.{args.column}: {res.protected} rows protected now, {res.null_rows} NULL left, "
        f"last id {res.last_id}",
        file=sys.stderr,
    )
    return 0


def _index(args: argparse.Namespace) -> int:
    from .. import provenance
    from ..deploy.vector_index import protect_into_faiss, save_index
    from ..io.atomic import atomic_path, check_output
    from ..protector import Protector

    out = check_output(args.output, args.overwrite, args.input, args.ids)
    record = provenance.refuse_protected_input(args.input, args.reprotect)
    decoder, encoder = load_models(args)
    prot = Protector(decoder, encoder, progress=False, **setting_kwargs(args))
    ids = gallery_ids(args.input, args.ids)
    index = protect_into_faiss(
        args.input, prot, ids=ids, factory=args.factory, chunk_rows=args.chunk_rows, progress=not args.no_progress
    )
    prov = prot.provenance(int(index.ntotal), int(index.d), record)
    prov["index"] = {"factory": args.factory}
    with atomic_path(out) as tmp:
        save_index(index, tmp)
    provenance.write(out, prov)
    print(f"wrote {args.output} ({index.ntotal} protected templates, {args.factory})", file=sys.stderr)
    return 0


def add_deploy_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``serve``, ``protect-table`` and ``index`` on the CLI's subparsers."""
    sv = sub.add_parser(
        "serve",
        help="an HTTP enrolment service with dynamic batching (Ray Serve; pip install 'advface_fast[serve]')",
        description="Protect templates that arrive one at a time: POST /protect (JSON or .npy), GET /healthz, "
        "GET /stats. Results equal protect() with the same key and ids.",
    )
    add_setting_args(sv, key_required=True)
    sv.add_argument("--api-key-file", required=True, help="file holding the token clients send as 'Bearer <token>'")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    sv.add_argument("--port", type=int, default=8000, help="HTTP port")
    sv.add_argument("--replicas", type=int, default=1, help="replicas (each loads the models once)")
    sv.add_argument("--cpus-per-replica", type=float, default=1.0, help="CPUs (torch threads) per replica")
    sv.add_argument("--max-batch", type=int, default=64, help="requests protected by one call at most")
    sv.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long a batch waits to fill")
    sv.add_argument("--max-rows", type=int, default=4096, help="templates per request at most")
    sv.add_argument("--max-body-mb", type=int, default=8, help="request body size limit (MiB)")
    sv.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else local)")
    sv.set_defaults(func=_serve)

    pt = sub.add_parser(
        "protect-table",
        help="protect a PostgreSQL table's embedding column in place (resumable; pip install 'advface_fast[postgres]')",
        description="Streams the column with a server-side cursor and commits transactional batches; a rerun "
        "resumes after the last committed id and refuses other settings.",
    )
    pt.add_argument("dsn", help="libpq connection string or URI, e.g. 'host=/run/postgresql dbname=faces'")
    pt.add_argument("table", help="table or schema.table")
    add_setting_args(pt)
    pt.add_argument("--column", default="embedding", help="embedding column: real[], double precision[] or bytea")
    pt.add_argument("--id-column", default="id", help="unique non-negative integer id (keys the protection)")
    pt.add_argument("--batch-rows", type=int, default=1024, help="rows per transaction")
    pt.add_argument("--max-rows", type=int, default=None, help="stop after this many rows (rerun continues)")
    pt.add_argument("--no-progress", action="store_true", help="no progress bar")
    pt.set_defaults(func=_protect_table)

    ix = sub.add_parser(
        "index",
        help="protect a .npy gallery into a FAISS index (pip install 'advface_fast[faiss]')",
        description="Protected, L2-normalised templates in an inner-product index under the gallery's ids.",
    )
    ix.add_argument("input", help="gallery of features, (N, D) float .npy")
    ix.add_argument("output", help="FAISS index file to write")
    add_setting_args(ix)
    ix.add_argument(
        "--ids", default=None, help="(N,) int64 .npy of gallery ids (default: the input's <stem>.ids.npy, else 0..N-1)"
    )
    ix.add_argument("--reprotect", action="store_true", help="accept an input whose provenance says it is protected")
    ix.add_argument("--factory", default="Flat", help="FAISS index factory string ('Flat', 'HNSW32', 'IVF1024,Flat')")
    ix.add_argument("--chunk-rows", type=int, default=65_536, help="rows protected and added at a time")
    ix.add_argument("--overwrite", action="store_true", help="replace an existing index file")
    ix.add_argument("--no-progress", action="store_true", help="no progress bar")
    ix.set_defaults(func=_index)
