"""The plug-in module's commands: ``embed`` (photos -> templates), ``calibrate-deployment``
(threshold and eps), ``verify`` / ``identify`` (decisions), ``info`` (what a file is), ``rekey``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .protect_options import add_setting_args, load_models, setting_kwargs


def _embed(args: argparse.Namespace) -> int:
    from ..encoders.loader import as_encoder
    from ..faces.photo_gallery import embed_photos, write_templates
    from ..io.atomic import check_output

    check_output(args.output, args.overwrite)
    encoder = as_encoder(args.encoder)
    emb = embed_photos(args.photos, encoder, cache_dir=args.cache_dir, progress=not args.no_progress)
    write_templates(args.output, emb, encoder, first_id=args.first_id, overwrite=args.overwrite, source=args.photos)
    people = len(set(emb.labels))
    print(
        f"wrote {args.output}: {len(emb.labels)} templates of {people} people, ids from {args.first_id}",
        file=sys.stderr,
    )
    if emb.skipped:
        print(f"{len(emb.skipped)} photos gave no template (listed in the provenance):", file=sys.stderr)
        for f, why in emb.skipped:
            print(f"  {f}: {why}", file=sys.stderr)
    return 0


def _calibrate_deployment(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import provenance
    from ..match.calibrate import calibrate_deployment

    rec = provenance.read(args.templates)
    if rec is None or not rec.get("labels"):
        raise ValueError(f"{args.templates} has no labels: calibrate on templates written by advface-fast embed")
    if provenance.is_protected(rec):
        raise ValueError(f"{args.templates} is protected: calibrate on the clear templates from embed")
    z = np.load(args.templates, allow_pickle=False)
    ids = np.load(provenance.ids_path(args.templates), allow_pickle=False)
    labels = [rec["labels"][str(i)] for i in ids.tolist()]
    decoder, encoder = load_models(args)
    kw = setting_kwargs(args)
    for k in ("eps", "alpha", "rotate", "key"):
        kw.pop(k)
    config, report = calibrate_deployment(
        z, labels, decoder, encoder, key=args.key_file, rotate=args.rotate, far=args.far,
        max_tar_loss=args.max_tar_loss, eps_grid=args.eps_grid, ids=ids,
        log=lambda m: print(m, file=sys.stderr), **kw,
    )  # fmt: skip
    if config is None:
        raise ValueError(report["reason"])
    config.save(args.out, overwrite=args.overwrite)
    print(
        f"wrote {args.out}: eps {report['recommendation']:g}, threshold {config.threshold:.4f} at FAR {args.far:g}",
        file=sys.stderr,
    )
    return 0


def _probes(args: argparse.Namespace) -> tuple:
    """``(templates (P, D), names, encoder fingerprint)`` of ``args.probe``: photos (embedded with
    ``--encoder``) or a ``.npy`` from ``embed`` (its provenance names its encoder)."""
    import numpy as np

    from .. import provenance

    path = Path(args.probe)
    if path.suffix == ".npy":
        rec = provenance.read(path)
        if rec is None:
            raise ValueError(f"{path} has no provenance: make probe templates with advface-fast embed (or pass photos)")
        if provenance.is_protected(rec):
            raise ValueError(f"{path} is a protected gallery, not probes: match fresh, clear templates")
        z = np.load(path, allow_pickle=False)
        ids = np.load(provenance.ids_path(path)) if provenance.ids_path(path).is_file() else np.arange(len(z))
        names = [(rec.get("labels") or {}).get(str(i), str(i)) for i in ids.tolist()]
        return z, names, rec.get("encoder")
    if not args.encoder:
        raise ValueError("photo probes need --encoder (the gallery's encoder)")
    from ..encoders.loader import as_encoder
    from ..faces.photo_gallery import embed_photos

    encoder = as_encoder(args.encoder)
    emb = embed_photos(path, encoder, cache_dir=args.cache_dir, progress=False)
    for f, why in emb.skipped:
        print(f"{f}: {why}", file=sys.stderr)
    return emb.features, [str(f) for f in emb.files], encoder.fingerprint()


def _matcher(args: argparse.Namespace):
    from ..match import DeploymentConfig, Matcher, open_gallery

    return Matcher(open_gallery(args.gallery), DeploymentConfig.load(args.deployment), args.key_file)


def _verify(args: argparse.Namespace) -> int:
    m = _matcher(args)
    z, _, enc = _probes(args)
    if len(z) != 1:
        raise ValueError(f"verify takes one probe photo or template, {args.probe} gave {len(z)}")
    d = m.verify(z[0], args.claim, enc)
    score = f"\tscore {d.score:.4f} threshold {d.threshold:.4f}" if args.show_score else ""
    print(f"{'accept' if d.accept else 'reject'}\t{args.claim}{score}")
    return 0 if d.accept else 1


def _identify(args: argparse.Namespace) -> int:
    m = _matcher(args)
    z, names, enc = _probes(args)
    for name, d in zip(names, m.identify(z, enc), strict=True):
        score = f"\tscore {d.score:.4f} threshold {d.threshold:.4f}" if args.show_score else ""
        print(f"{name}\t{d.identity if d.accept else 'unknown'}{score}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .. import provenance

    if args.file.startswith(("postgresql://", "postgres://")):
        from ..deploy.postgres_table import table_state
        from ..match.gallery import parse_table_url

        dsn, table, column = parse_table_url(args.file)
        state = table_state(dsn, table, column)
        if state is None:
            raise ValueError(f"{args.file}: no protect-table run is recorded for it (postgresql://...#table[:column])")
        done = "finished" if state["finished_at"] else "unfinished"
        print(
            f"{table}:{column}: {done} protect-table run, {state['rows_done']} rows protected "
            f"up to id {state['last_id']}"
        )
        for line in provenance.describe(state["provenance"]) if state.get("provenance") else []:
            print(f"  {line}")
        return 0
    path = Path(args.file)
    if not path.exists():
        raise FileNotFoundError(f"no file {path}")
    text = path.read_bytes()[:4096] if path.is_file() else b""
    if b'"advface_fast.deployment/1"' in text:
        from ..match.config import DeploymentConfig

        c = DeploymentConfig.load(path)
        print(f"{path}: deployment configuration")
        print(f"threshold: {c.threshold:.6f} (accept = cosine > threshold), fitted for FAR {c.far:g}")
        print("settings: " + ", ".join(f"{k}={v}" for k, v in sorted(c.settings.items())))
        print(f"key id: {c.key_id}; shadow decoder: {c.decoder}; encoder: {(c.encoder or {}).get('name')}")
        return 0
    rec = provenance.read(path)
    if rec is None:
        if path.suffix in ("", ".key"):
            from ..keys import key_id, load_key

            print(f"{path}: key file, key id {key_id(load_key(path))} (the key itself is not shown)")
            return 0
        raise ValueError(
            f"{path} has no provenance ({provenance.sidecar_path(path).name}): not written by advface_fast"
        )
    print(f"{path}:")
    for line in provenance.describe(rec):
        print(f"  {line}")
    return 0


def _rekey(args: argparse.Namespace) -> int:
    from ..match.rekey import rekey

    rec = rekey(args.input, args.output, args.old_key, args.new_key, overwrite=args.overwrite)
    print(f"wrote {args.output}: re-keyed to key {rec['protection']['transform']['key_id']}", file=sys.stderr)
    return 0


def _match_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "gallery", help="protected gallery: .npy or FAISS index (with provenance), or postgresql://...#table"
    )
    p.add_argument("probe", help="probe photo(s) (file, folder or list; needs --encoder) or a .npy from embed")
    p.add_argument("--deployment", required=True, help="deployment configuration (threshold; calibrate-deployment)")
    p.add_argument("--key-file", default=None, help="the gallery's key (needed for a rotated gallery)")
    p.add_argument("--encoder", default=None, help="the encoder that embeds photo probes (checked against the gallery)")
    p.add_argument("--show-score", action="store_true", help="also print the score and threshold (operator's logs)")
    p.add_argument("--cache-dir", default=None, help="cache of aligned faces and embeddings ('' disables)")


def add_match_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``embed``, ``calibrate-deployment``, ``verify``, ``identify``, ``info``, ``rekey``."""
    em = sub.add_parser(
        "embed",
        help="photos -> a template gallery (.npy + ids + provenance), faces aligned as the encoder expects",
        description="One folder per person (or a flat folder, a list file 'path[,label]', or one photo). Photos "
        "without a face are named, never dropped silently.",
    )
    em.add_argument("photos", help="folder of person folders, flat folder, .txt/.csv list, or a photo")
    em.add_argument("output", help="templates .npy to write (+ <stem>.ids.npy, <stem>.provenance.json)")
    em.add_argument("--encoder", required=True, help="'sface', 'mobilefacenet', or a model file (.onnx/.tflite/...)")
    em.add_argument("--first-id", type=int, default=0, help="enrolment id of the first template (default 0)")
    em.add_argument("--cache-dir", default=None, help="cache of aligned faces and embeddings ('' disables)")
    em.add_argument("--overwrite", action="store_true", help="replace an existing output")
    em.add_argument("--no-progress", action="store_true", help="no progress bars")
    em.set_defaults(func=_embed)

    ca = sub.add_parser(
        "calibrate-deployment",
        help="fit the decision threshold and choose eps on your own templates (TAR loss at a FAR)",
        description="Enrols each person's first template, probes with the rest, fits the threshold for --far on "
        "every cross-identity pair, and picks the largest eps whose TAR loss at a re-fitted threshold is at most "
        "--max-tar-loss points. Writes the deployment configuration protect, index, verify and identify read.",
    )
    ca.add_argument("templates", help="clear templates from embed (several photos per person)")
    add_setting_args(ca, key_required=True)
    ca.add_argument("--out", required=True, help="deployment configuration to write (.json)")
    ca.add_argument("--far", type=float, default=1e-3, help="false accept rate of the threshold")
    ca.add_argument("--max-tar-loss", type=float, default=1.0, help="largest TAR loss at --far, in points")
    ca.add_argument("--eps-grid", type=float, nargs="+", default=None, help="eps values (default 1/8..2 x default)")
    ca.add_argument("--overwrite", action="store_true", help="replace an existing configuration")
    ca.set_defaults(func=_calibrate_deployment)

    ve = sub.add_parser("verify", help="is this probe the claimed person? accept (exit 0) or reject (exit 1)")
    _match_args(ve)
    ve.add_argument("--claim", required=True, help="the claimed person (label from embed) or enrolment id")
    ve.set_defaults(func=_verify)

    idf = sub.add_parser("identify", help="who is each probe? a person or 'unknown', one line per probe")
    _match_args(idf)
    idf.set_defaults(func=_identify)

    inf = sub.add_parser("info", help="what a file is: provenance of a gallery/index, a deployment config, a key's id")
    inf.add_argument(
        "file", help=".npy, FAISS index, run folder, deployment .json, key file, or postgresql://...#table[:column]"
    )
    inf.set_defaults(func=_info)

    rk = sub.add_parser("rekey", help="move a rotated gallery (.npy or FAISS index) to a new key without re-enrolment")
    rk.add_argument("input", help="protected gallery (.npy or FAISS index, with provenance)")
    rk.add_argument("output", help="where to write the re-keyed gallery")
    rk.add_argument("--old-key", required=True, help="the gallery's current key file")
    rk.add_argument("--new-key", required=True, help="the new key file (advface-fast keygen)")
    rk.add_argument("--overwrite", action="store_true", help="replace an existing output")
    rk.set_defaults(func=_rekey)
