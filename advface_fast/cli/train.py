"""The ``advface-fast`` commands that train models: ``train-shadow`` (a decoder for an encoder) and
``train-default`` (the shipped models of the synthetic world)."""

from __future__ import annotations

import argparse
import sys


def _load_images(spec: str, size: int | None):
    """``synthetic:IDS:PER_ID[:SIZE]``, an ``.npy`` image array, a ``.bin`` file or an image folder."""
    from pathlib import Path

    from ..data import SynthFaces, read_image_folder, read_insightface_bin, read_npy_images

    if spec.startswith("synthetic:"):
        parts = [int(p) for p in spec.split(":")[1:]]
        if len(parts) not in (2, 3):
            raise ValueError(f"expected synthetic:IDS:PER_ID[:SIZE], got {spec!r}")
        return SynthFaces(parts[2] if len(parts) == 3 else (size or 32)).dataset(parts[0], parts[1])[0]
    path = Path(spec)
    if path.suffix == ".npy":
        return read_npy_images(path)
    if path.suffix == ".bin":
        return read_insightface_bin(path, size)[0]
    return read_image_folder(path, size)[0]


def _aligned_folder(folder: str, size: int | None, progress: bool, encoder: object = None):
    """Photos of an identity folder (or a flat folder), prepared as the encoder's input contract
    says (YuNet-aligned to the ArcFace 112x112 template for aligned-face encoders; as they are for
    the others; cached), as ``(N, 3, S, S)`` in [-1, 1]; photos without a face are dropped and counted."""
    from pathlib import Path

    from ..data.photo_sets import images_under
    from ..faces.align import align_files
    from ..faces.embed import faces_to_tensor
    from ..faces.photo_gallery import detector_for

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"--align needs an image folder, got {folder}")
    skipped: list = []
    files = images_under(root, skipped)
    for f, why in skipped:
        print(f"skipped {f}: {why}", file=sys.stderr)
    if not files:
        raise ValueError(f"{folder} holds no images (any file Pillow reads)")
    aligned = align_files(files, pick="largest", detector=detector_for(encoder), progress=progress)
    counts = aligned.counts()
    print(f"aligned {len(files)} photos: {counts}; {counts['fallback']} without a face dropped", file=sys.stderr)
    return faces_to_tensor(aligned.faces[aligned.ok()], size)


def _train_shadow(args: argparse.Namespace) -> int:
    import json

    import torch

    from ..encoders.embed import embed
    from ..encoders.loader import as_encoder
    from ..models.decoders import ConvDecoder, MLPDecoder
    from ..models.serialization import KEY_ENCODER, save_model
    from ..train import fit_decoder

    encoder = as_encoder(args.encoder)
    if args.align:
        images = _aligned_folder(args.images, args.size, progress=not args.no_progress, encoder=encoder)
    else:
        images = _load_images(args.images, args.size)
        if getattr(getattr(encoder, "spec", None), "alignment", "none") != "none":
            print(
                f"advface-fast train-shadow: note: {encoder.name} expects {encoder.spec.alignment} aligned faces; "
                "pass --align if these photos are not aligned already",
                file=sys.stderr,
            )
    fp = json.dumps(encoder.fingerprint()) if hasattr(encoder, "fingerprint") else None
    with torch.no_grad():
        dim = encoder(images[:2]).shape[1]
    shape = tuple(images.shape[1:])
    decoder = MLPDecoder(dim, args.hidden, shape) if args.arch == "mlp" else ConvDecoder(dim, shape, args.base_channels)
    features = None
    if args.identity_steps:  # an encoder with no differentiable form is refused before any training
        from ..encoders.base import differentiable

        features = differentiable(encoder)
    n_val = max(1, int(len(images) * args.val_fraction))
    train, val = images[n_val:], images[:n_val]
    dev = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # the features are computed once: for equation (1) and, with --identity-steps, the fine-tuning
    feats = embed(encoder, train, flip=False, device=dev)
    decoder, _ = fit_decoder(
        feats,
        train,
        decoder,
        val=(embed(encoder, val, flip=False, device=dev), val),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        seed=args.seed,
        checkpoint=args.checkpoint,
        resume=not args.no_resume,
        progress=not args.no_progress,
        run={"encoder": fp, "arch": args.arch, "image_shape": list(shape)},
    )
    if features is not None:
        from ..train.identity import finetune_identity

        decoder, _ = finetune_identity(
            decoder.cpu(),
            feats.cpu(),
            train,
            features,
            steps=args.identity_steps,
            seed=args.seed,
            progress=not args.no_progress,
            log=lambda s: print(s, file=sys.stderr),
        )
    save_model(decoder, args.out, metadata={KEY_ENCODER: fp} if fp else None)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _train_default(args: argparse.Namespace) -> int:
    from ..models.defaults import MODELS_ENV
    from ..train.defaults import train_default

    train_default(
        args.out_dir,
        ids=args.ids,
        per_id=args.per_id,
        encoder_epochs=args.encoder_epochs,
        decoder_epochs=args.decoder_epochs,
        dim=args.dim,
        progress=not args.no_progress,
    )
    print(f"wrote {args.out_dir}; use them with: export {MODELS_ENV}={args.out_dir}", file=sys.stderr)
    return 0


def add_train_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``train-shadow`` and ``train-default`` to the CLI's subcommands."""
    ts = sub.add_parser(
        "train-shadow",
        help="train a shadow (or attacker) decoder for an encoder",
        description="Train a feature-to-image decoder with the L1 loss of equation (1).",
    )
    ts.add_argument(
        "--encoder",
        required=True,
        help="face encoder: 'sface', 'mobilefacenet', .safetensors (advface_fast), or .onnx/.tflite (known, or "
        "with a <file>.onnx.json / <file>.tflite.json input contract); recorded in the decoder file",
    )
    ts.add_argument(
        "--images",
        required=True,
        help="training faces: image folder, insightface .bin, (N,3,H,W) .npy, or synthetic:IDS:PER_ID",
    )
    ts.add_argument("--out", required=True, help="decoder file to write (.safetensors)")
    ts.add_argument("--arch", choices=("mlp", "conv"), default="mlp", help="MLPDecoder (fused kernels) or ConvDecoder")
    ts.add_argument("--hidden", type=int, nargs="+", default=[512, 1024], help="MLP hidden widths")
    ts.add_argument("--base-channels", type=int, default=32, help="ConvDecoder width")
    ts.add_argument("--size", type=int, default=None, help="resize images to SIZE x SIZE (default: as read)")
    ts.add_argument(
        "--align",
        action="store_true",
        help="prepare the photos of --images (a folder) as the encoder's input contract says first: YuNet-aligned to "
        "the ArcFace 112x112 template for SFace/ArcFace-class encoders, as they are otherwise (cached)",
    )
    ts.add_argument("--epochs", type=int, default=20, help="training epochs")
    ts.add_argument(
        "--identity-steps",
        type=int,
        default=0,
        help="then fine-tune this many steps with L1 + an identity loss through the encoder (its reconstructions "
        "recognised as the template; needs a torch or a known ONNX encoder; default 0: L1 only)",
    )
    ts.add_argument("--batch-size", type=int, default=256, help="images per step")
    ts.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (cosine schedule)")
    ts.add_argument("--val-fraction", type=float, default=0.05, help="fraction of the images held out for validation")
    ts.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: GPU if available)")
    ts.add_argument("--seed", type=int, default=0, help="seed of initialisation and shuffling")
    ts.add_argument("--checkpoint", default=None, help="checkpoint file, saved every epoch")
    ts.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    ts.add_argument("--no-progress", action="store_true", help="no progress bars")
    ts.set_defaults(func=_train_shadow)

    td = sub.add_parser(
        "train-default",
        help="reproduce the shipped default models of the synthetic-face world",
        description="Train the default encoder, shadow decoder and attacker (~10 min on 2 CPU cores).",
    )
    td.add_argument(
        "--out-dir",
        required=True,
        help="folder to write them to (required; never the installed package); load_default() and the "
        "commands that use the default models read them from there when $ADVFACE_MODELS points at it",
    )
    td.add_argument("--ids", type=int, default=1000, help="training identities")
    td.add_argument("--per-id", type=int, default=16, help="images per identity")
    td.add_argument("--encoder-epochs", type=int, default=8, help="epochs of the encoder")
    td.add_argument("--decoder-epochs", type=int, default=20, help="epochs of the shadow decoder and the attacker")
    td.add_argument(
        "--dim", type=int, default=128, help="template dimension (the shipped models: 128; 512 for ArcFace-class size)"
    )
    td.add_argument("--no-progress", action="store_true", help="no progress bars")
    td.set_defaults(func=_train_default)
