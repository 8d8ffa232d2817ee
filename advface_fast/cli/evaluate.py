"""The ``advface-fast`` commands that evaluate protection: ``eval`` and ``threat`` (synthetic world),
``eval-faces``, ``calibrate`` and ``threat-faces`` (real photographs), ``eval-input`` (input-side
baselines)."""

from __future__ import annotations

import argparse
import os


def _eval(args: argparse.Namespace) -> int:
    import dataclasses

    from ..eval import EvalConfig, run_evaluation

    cfg = EvalConfig.from_json(args.config)
    if args.quick:
        cfg = dataclasses.replace(
            cfg,
            users=200,
            attacker_ids=200,
            attacker_per_id=6,
            attacker_epochs=4,
            attackers=["shipped_conv", "mlp_deep"],
            sweep_eps=[0.02, 0.04],
            laplace_epsilons=[50.0],
            sweep_steps=[5],
            sweep_alpha_ratio=[0.1],
            note="--quick run: a smoke test with undertrained attackers, not for conclusions",
        )
    run_evaluation(cfg, args.out_dir)
    return 0


def _eval_input(args: argparse.Namespace) -> int:
    import dataclasses

    from ..eval.duetface_method import DuetFaceMethod  # noqa: F401  (registers the method)
    from ..eval.input_methods import InputEvalConfig, evaluate_input_method

    cfg = InputEvalConfig.from_json(args.config)
    if args.method:
        cfg = dataclasses.replace(cfg, method=args.method)
    evaluate_input_method(cfg, args.out_dir, args.cache_dir)
    return 0


def _faces_overrides(args: argparse.Namespace) -> dict:
    """The FacesEvalConfig settings the data options of ``_add_faces_data_args`` set."""
    overrides = {
        k: v
        for k, v in {
            "pairs": args.pairs,
            "pairs_images": args.pairs_images,
            "test_folder": args.test_folder,
            "train_images": args.train_images,
            "train_identity": args.train_identity,
            "encoder": args.encoder,
            "judge": args.judge,
        }.items()
        if v is not None
    }
    if args.test_folder:
        overrides["pairs"] = None
    if args.train_images and args.train_identity is None:
        overrides["train_identity"] = None  # a folder with one sub-folder per identity
    return overrides


def command_line(args: argparse.Namespace) -> str:
    """The command that produced a report, as typed (shell-quoted), for the report to state."""
    import shlex

    return shlex.join(["advface-fast", *getattr(args, "argv", [args.command])])


def _faces_config(args: argparse.Namespace):
    """FacesEvalConfig from --config and the data options."""
    import dataclasses

    from ..eval.faces import FacesEvalConfig

    return dataclasses.replace(FacesEvalConfig.from_json(args.config), **_faces_overrides(args))


def _eval_faces(args: argparse.Namespace) -> int:
    import dataclasses

    from ..eval.faces import run_faces_evaluation

    cfg = _faces_config(args)
    if args.quick:
        cfg = dataclasses.replace(
            cfg,
            shadow_epochs=3,
            attacker_epochs=3,
            attackers=cfg.attackers[:1],
            sweep_eps=[cfg.eps] if cfg.eps is not None else None,
            sweep_eps_factors=[1.0],
            shadow_identity_steps=min(cfg.shadow_identity_steps, 5),
            sweep_laplace=[cfg.laplace_epsilon],
            privacy_per_fold=min(cfg.privacy_per_fold, 20),
            judge_per_fold=min(cfg.judge_per_fold, 5),
            note="--quick run: a smoke test with undertrained decoders, not for conclusions",
        )
    run_faces_evaluation(
        cfg, args.out_dir, cache_dir=args.cache_dir, progress=not args.no_progress, command=command_line(args)
    )
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from ..eval.calibrate import run_calibration

    result = run_calibration(
        _faces_config(args),
        args.eps_grid,
        args.out_dir,
        max_loss=args.max_loss,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
        command=command_line(args),
    )
    print(f"eps = {result['recommendation']['eps']}: {result['recommendation']['reason']}")
    return 0 if result["recommendation"]["eps"] is not None else 1


def _add_faces_data_args(p: argparse.ArgumentParser) -> None:
    """The data, model and cache options ``eval-faces`` and ``calibrate`` share."""
    p.add_argument("--pairs", default=None, help="LFW-format pairs.txt (default: ../shared/data/lfw/pairs.txt)")
    p.add_argument("--pairs-images", default=None, help="image root of --pairs (default: lfw-deepfunneled beside it)")
    p.add_argument("--test-folder", default=None, help="instead of --pairs: one sub-folder per identity")
    p.add_argument("--train-images", default=None, help="training faces (default: the CelebA subset's images)")
    p.add_argument(
        "--train-identity",
        default=None,
        help="'<file> <identity>' list for --train-images (default: CelebA's; with --train-images alone, "
        "the folder has one sub-folder per identity)",
    )
    p.add_argument(
        "--encoder",
        default=None,
        help="'sface' (default), 'mobilefacenet', or an .onnx/.tflite/.safetensors with its contract",
    )
    p.add_argument("--judge", default=None, choices=("dlib", "none"), help="independent recogniser (default dlib)")
    p.add_argument("--config", default=None, help="JSON file overriding FacesEvalConfig settings")
    p.add_argument("--cache-dir", default=None, help="cache folder (default $ADVFACE_CACHE or ~/.cache/advface_fast)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _threat(args: argparse.Namespace) -> int:
    import dataclasses

    from ..eval.threat.suite import ThreatConfig, run_threat_suite

    cfg = ThreatConfig.from_json(args.config)
    if args.quick:
        cfg = dataclasses.replace(
            cfg,
            users=100,
            attacker_ids=200,
            judge_ids=200,
            judge_epochs=2,
            shadow_epochs=2,
            purifier_epochs=3,
            identity_steps=20,
            optimisation_people=10,
            optimisation_steps=10,
            procrustes_pairs=[64, 256],
            note="--quick run: a smoke test with undertrained models, not for conclusions",
        )
    run_threat_suite(cfg, args.out_dir)
    return 0


def _threat_faces(args: argparse.Namespace) -> int:
    import dataclasses

    from ..eval.threat.faces_suite import FacesThreatConfig, run_faces_threat_suite

    cfg = FacesThreatConfig.from_json(args.config)
    cfg = dataclasses.replace(cfg, faces={**cfg.faces, **_faces_overrides(args)})
    if args.quick:
        cfg = dataclasses.replace(
            cfg,
            faces={
                **cfg.faces,
                "shadow_epochs": 2,
                "attacker_epochs": 2,
                "attacker_epochs_by_name": {},
                "identity_steps": 5,
                "privacy_per_fold": 5,
                "judge_per_fold": 3,
            },
            own_shadow_epochs=2,
            purifier_epochs=2,
            optimisation_people=3,
            optimisation_steps=3,
            procrustes_pairs=[32],
            oracle_queries=[128],
            note="--quick run: a smoke test with undertrained models, not for conclusions",
        )
    run_faces_threat_suite(
        cfg, args.out_dir, cache_dir=args.cache_dir, progress=not args.no_progress, command=command_line(args)
    )
    return 0


def add_eval_commands(sub: argparse._SubParsersAction) -> None:
    """Add the evaluation commands to the CLI's subcommands."""
    ev = sub.add_parser(
        "eval",
        help="evaluate protection: utility, attacks, baselines, sweep; writes a report",
        description="Run the evaluation harness on the synthetic-face world with the default models.",
    )
    ev.add_argument("--config", default=None, help="JSON file overriding EvalConfig settings")
    ev.add_argument("--out-dir", default="advface_eval_out", help="report folder")
    ev.add_argument("--quick", action="store_true", help="a small run (a few minutes on CPU)")
    ev.set_defaults(func=_eval)

    ef = sub.add_parser(
        "eval-faces",
        help="evaluate protection on real photographs (LFW protocol, or your own labelled faces)",
        description="The LFW protocol (or identity folders) with a real encoder: aligned, embedded, "
        "decoders trained on other faces, AdvFace and the baselines scored by E and an independent "
        "recogniser. Every stage is cached under --cache-dir.",
    )
    _add_faces_data_args(ef)
    ef.add_argument(
        "--out-dir", default="advface_eval_faces_out", help="report folder (default advface_eval_faces_out)"
    )
    ef.add_argument("--quick", action="store_true", help="a smoke test: 3 epochs, one attacker, 20 pairs per fold")
    ef.set_defaults(func=_eval_faces)

    ei = sub.add_parser(
        "eval-input",
        help="evaluate an input-side baseline (DuetFace) in the synthetic world, beside AdvFace's rows",
        description="Trains the method (cached), then verification, template attackers and attackers of what "
        "its server receives, judged as in `advface-fast eval`.",
    )
    ei.add_argument("--method", default=None, help="input method (default DuetFace, or the config's)")
    ei.add_argument("--config", default=None, help="JSON overrides of advface_fast.eval.input_methods.InputEvalConfig")
    ei.add_argument("--out-dir", default="advface_eval_input_out", help="report folder")
    ei.add_argument(
        "--cache-dir", default=os.environ.get("ADVFACE_CACHE", "advface_cache"), help="trained models ($ADVFACE_CACHE)"
    )
    ei.set_defaults(func=_eval_input)

    ca = sub.add_parser(
        "calibrate",
        help="recommend eps for your encoder and data: the largest whose TAR loss at FAR 1e-3 stays within a bound",
        description="Sweep eps on a real-faces protocol (as eval-faces) and recommend the largest eps whose loss of "
        "TAR at FAR 1e-3 (threshold re-fitted for the protected gallery, every cross-identity pair an impostor; "
        "best-threshold accuracy where too few impostors measure it) is at most --max-loss points, with the attack "
        "rates at each eps. For a deployment's threshold and configuration: calibrate-deployment.",
    )
    _add_faces_data_args(ca)
    ca.add_argument(
        "--eps-grid",
        type=float,
        nargs="+",
        default=[0.01, 0.02, 0.04, 0.06, 0.08, 0.12],
        help="eps values to try (default 0.01 0.02 0.04 0.06 0.08 0.12)",
    )
    ca.add_argument("--max-loss", type=float, default=1.0, help="TAR (or accuracy) loss bound in points (default 1)")
    ca.add_argument("--out-dir", default="advface_calibration_out", help="where calibration.json goes")
    ca.set_defaults(func=_calibrate)

    th = sub.add_parser(
        "threat",
        help="the threat-model suite: attackers who know the method against the defences (synthetic world)",
        description="Cross the defence configurations (public seed, secret key, private shadow, keyed rotation) "
        "with attackers that know the method (purifiers, identity-loss decoders, white-box optimisation, "
        "Procrustes key recovery), judged by E and an independent encoder. About 40 minutes on 2 CPU cores.",
    )
    th.add_argument("--out-dir", default="advface_threat_out", help="report folder (default advface_threat_out)")
    th.add_argument("--config", default=None, help="JSON file overriding ThreatConfig settings")
    th.add_argument("--quick", action="store_true", help="a smoke test (a few minutes on 2 CPU cores)")
    th.set_defaults(func=_threat)

    tf = sub.add_parser(
        "threat-faces",
        help="the threat-model suite on real faces (LFW with SFace by default, or your own identity "
        "folders; judged by dlib)",
        description="The defences (public seed, secret key, keyed rotation, both) against attackers that know "
        "the method on the real-faces protocol of eval-faces (whose cached data, shadow decoder and attackers "
        "it reuses), the attacks on the rotation's key (known pairs, moment alignment, a score oracle) and "
        "unlinkability across two keys. --config is a FacesThreatConfig JSON (its 'faces' object holds "
        "FacesEvalConfig settings).",
    )
    _add_faces_data_args(tf)
    tf.add_argument(
        "--out-dir", default="advface_threat_faces_out", help="report folder (default advface_threat_faces_out)"
    )
    tf.add_argument("--quick", action="store_true", help="a smoke test with undertrained models")
    tf.set_defaults(func=_threat_faces)
