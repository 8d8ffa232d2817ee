"""The deployment commands of the CLI: ``serve``, ``protect-table``, ``index``."""

from __future__ import annotations

import argparse
import signal
import sys
import time

from ..deploy.service.config import DEFAULT_IDENTITY_BUDGET, DEFAULT_KEY_BUDGET
from .protect_options import add_setting_args, gallery_ids, load_models, setting_kwargs


def _serve(args: argparse.Namespace) -> int:
    from ..deploy.service import Budget, ServiceConfig, load_api_keys, start_service, stop_service
    from ..keys import load_key

    decoder, _ = load_models(args)  # checks --encoder against the decoder; replicas build their own
    kwargs = setting_kwargs(args)
    key_file = kwargs.pop("key")
    key = load_key(key_file)
    api_keys = load_api_keys(args.api_key_file)  # a token that is the protection key: refused by build_app
    if args.gallery and not args.deployment:
        raise ValueError("--gallery needs --deployment (the threshold decisions are taken at)")
    cfg = ServiceConfig(
        max_batch_requests=args.max_batch,
        batch_wait_s=args.batch_wait_ms / 1000,
        max_rows=args.max_rows,
        max_body_bytes=args.max_body_mb << 20,
        num_replicas=args.replicas,
        cpus_per_replica=args.cpus_per_replica,
        protect_kwargs=kwargs,
        gallery=args.gallery,
        deployment=args.deployment,
        audit_log=args.audit_log,
        identity_budget=Budget.parse(args.identity_budget),
        key_budget=Budget.parse(args.key_budget),
    )
    # SIGTERM (systemd, docker stop) stops like Ctrl-C: the application, Serve and Ray shut down.
    # Set before and again after start: ray.init installs its own handler (a stack dump, then abort)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        url = start_service(
            decoder, args.encoder, key, api_keys, cfg, host=args.host, port=args.port, address=args.address,
            ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
        )  # fmt: skip
        signal.signal(signal.SIGTERM, _interrupt)
        endpoints = "/protect, /enrol, /verify, /identify, /stats, /healthz, /docs" if cfg.gallery else "/protect"
        print(f"serving on {url} ({endpoints}); Ctrl-C or SIGTERM stops", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping the service", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the shutdown short
        stop_service()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _api_key(args: argparse.Namespace) -> int:
    from ..deploy.service.access import add_api_key, parse_scopes

    token = add_api_key(args.file, args.name, parse_scopes(args.scopes))
    print(f"added {args.name} ({args.scopes}) to {args.file}; its token (shown once):", file=sys.stderr)
    print(token)
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
        help="the HTTP service: protect, enrol, verify, identify (Ray Serve + FastAPI; pip install "
        "'advface_fast[serve]')",
        description="POST /protect, and with --gallery: /enrol, /verify, /identify (decisions, not scores), each "
        "under API-key scopes, query budgets and an audit log. GET /docs, /openapi.json, /healthz, /stats.",
    )
    add_setting_args(sv, key_required=True)
    sv.add_argument(
        "--api-key-file",
        required=True,
        help="API keys: lines 'NAME SCOPES sha256:HEX' (advface-fast api-key), or one token",
    )
    sv.add_argument(
        "--gallery",
        default=None,
        help="FAISS index to enrol into and match against (created if absent), postgresql://...#table (a column "
        "protect-table finished), or a .npy gallery (read-only)",
    )
    sv.add_argument("--audit-log", default=None, help="append-only log of decisions (default <gallery>.audit.jsonl)")
    sv.add_argument("--identity-budget", default=str(DEFAULT_IDENTITY_BUDGET.queries) + "/h",
                    help="verify queries per claimed identity per window, e.g. 20/h, 5/30s, none")  # fmt: skip
    sv.add_argument("--key-budget", default=str(DEFAULT_KEY_BUDGET.queries) + "/h",
                    help="verify/identify queries per API key per window")  # fmt: skip
    sv.add_argument("--ssl-certfile", default=None, help="TLS certificate (PEM): serve HTTPS")
    sv.add_argument("--ssl-keyfile", default=None, help="TLS private key (PEM) of --ssl-certfile")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    sv.add_argument("--port", type=int, default=8000, help="HTTP port")
    sv.add_argument("--replicas", type=int, default=1, help="protecting replicas (each loads the models once)")
    sv.add_argument("--cpus-per-replica", type=float, default=1.0, help="CPUs (torch threads) per replica")
    sv.add_argument("--max-batch", type=int, default=64, help="requests protected by one call at most")
    sv.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long a batch waits to fill")
    sv.add_argument("--max-rows", type=int, default=4096, help="templates per request at most")
    sv.add_argument("--max-body-mb", type=int, default=8, help="request body size limit (MiB)")
    sv.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else local)")
    sv.set_defaults(func=_serve)

    ak = sub.add_parser(
        "api-key",
        help="add a client API key with scopes to a service's key file (prints the token once)",
        description="Scopes: protect, enrol, verify, identify, stats, scores (similarity scores: give it to "
        "nobody who does not need it).",
    )
    ak.add_argument("name", help="the client's name (in the audit log and budgets)")
    ak.add_argument("--scopes", required=True, help="comma-separated, e.g. verify,identify")
    ak.add_argument("--file", required=True, help="the API key file (created mode 0600)")
    ak.set_defaults(func=_api_key)

    pt = sub.add_parser(
        "protect-table",
        help="protect a PostgreSQL table's embedding column in place (resumable; pip install 'advface_fast[postgres]')",
        description="Streams the column with a server-side cursor and commits transactional batches; a rerun "
        "resumes after the last committed id and refuses other settings.",
    )
    pt.add_argument(
        "dsn",
        help="libpq connection string or URI, e.g. 'host=/run/postgresql dbname=faces'; keep a password out of it "
        "(the process list shows arguments): ~/.pgpass or PGPASSWORD",
    )
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
