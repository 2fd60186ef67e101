"""The demo's third act, a PyTorch image classifier on the bundled 8x8 digits: train a CNN,
attack it (FGSM and PGD), harden it with adversarial training, attack it again, export the
hardened network to ONNX with an int8 variant, and serve both on 127.0.0.1 (fp32 as
production, int8 on a 20% canary), sending held-out images as traffic.

Needs ``keel[torch]``: ``keel demo --act torch``."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import Any

__all__ = ["MODEL", "run_torch_act"]

MODEL = "digits"
EPS = 0.1  # the attack budget shown: L-infinity, in pixel units (pixels are in [0, 1])
HARDEN = {"adv_epsilon": EPS, "adv_steps": 3}


def _robustness(store: Any, ref: str, seed: int) -> dict[str, float]:
    from keel.audit import audit, evidence_values

    values = evidence_values(audit(store, ref, sections=["robustness"], seed=seed).doc)
    key = str(EPS).replace(".", "_")
    return {
        attack: float(values[f"robustness.{attack}.eps_{key}.accuracy"])
        for attack in ("fgsm", "pgd")
    }


def _send(url: str, images: Any, labels: Any) -> dict[str, Any]:
    """One request per image on a keep-alive connection; per version: answered, correct."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    by_version: dict[int, list[int]] = {}
    t0 = time.perf_counter()
    try:
        for i, (img, want) in enumerate(zip(images, labels, strict=True)):
            body = json.dumps({"rows": [{"X": img.tolist()}]}).encode()
            headers = {"Content-Type": "application/json", "x-keel-key": f"camera-{i}"}
            conn.request("POST", f"/models/{MODEL}/predict", body, headers)
            answer = json.loads(conn.getresponse().read())
            got = answer["predictions"][0]["label"]
            seen = by_version.setdefault(int(answer["version"]), [0, 0])
            seen[0] += 1
            seen[1] += int(str(got) == str(want))
    finally:
        conn.close()
    seconds = time.perf_counter() - t0
    return {
        "requests": len(labels),
        "seconds": seconds,
        "by_version": {v: {"answered": n, "accuracy": ok / n} for v, (n, ok) in by_version.items()},
    }


def run_torch_act(root: Path, *, seed: int = 0, say: Any = print) -> dict[str, Any]:
    """Run the act in a new project at ``root``; ``say`` gets one line per step."""
    import numpy as np

    from keel import project, registry
    from keel.data import ingest
    from keel.datasets import write_digits_npz
    from keel.errors import require
    from keel.export import export_variants, holdout_of
    from keel.serve import PredictionLog, Release, start
    from keel.train import train

    require("torch", "torch")
    root.mkdir(parents=True, exist_ok=True)
    project.init(root, name="digits-demo").close()
    out: dict[str, Any] = {}
    with project.open_project(root) as proj:
        store = proj.store
        ds = ingest(store, write_digits_npz(root / "data"), name="digits").dataset
        say(f"ingested {ds.ref}: {ds.n_rows:,} images of 8x8 pixels, X float32 [1, 8, 8]")
        plain = train(store, ds.ref, "y", model="torch-cnn", seed=seed)
        mv1 = plain.register(store, MODEL, "torch-cnn on 8x8 digits")
        ep = plain.epochs
        say(
            f"trained {mv1.ref} (torch-cnn): accuracy {plain.metrics['accuracy']:.3f} on "
            f"{ep.get('epochs_run', '?')} epochs (best epoch {ep.get('best_epoch', '?')} kept)"
        )
        r1 = _robustness(store, mv1.ref, seed)
        say(
            f"attacked {mv1.ref} at eps {EPS}: FGSM accuracy {r1['fgsm']:.3f}, "
            f"PGD accuracy {r1['pgd']:.3f}"
        )
        hard = train(store, ds.ref, "y", model="torch-cnn", params=HARDEN, seed=seed)
        mv2 = hard.register(store, MODEL, f"torch-cnn, adversarially trained (PGD, eps {EPS})")
        r2 = _robustness(store, mv2.ref, seed)
        say(
            f"hardened {mv2.ref} (PGD adversarial training, eps {EPS}): accuracy "
            f"{hard.metrics['accuracy']:.3f}; FGSM {r2['fgsm']:.3f}, PGD {r2['pgd']:.3f}"
        )
        exported, tradeoff, variants = export_variants(store, mv2.ref, quantize="int8")
        int8 = variants[0]
        sizes = {row["variant"]: row for row in tradeoff.to_dict()["rows"]}
        say(
            f"exported {mv2.ref} to ONNX: parity max |dp| "
            f"{exported.parity.to_dict().get('max_abs_diff', float('nan')):.1e}; "
            f"int8 variant {int8} ({_size_line(sizes)})"
        )
        registry.set_alias(store, mv2.ref, "production", why="hardened, fp32")
        registry.set_alias(store, int8, "candidate", why="int8, on a 20% canary")
        X, y = holdout_of(store, mv2.ref)
        images = np.stack(list(X["X"]))
        release = Release(MODEL, {"production": 80, "candidate": 20}, seed=seed)
        with PredictionLog(store) as log, start(store, [release], sink=log) as server:
            traffic = _send(server.url, images, y)
        parts = ", ".join(
            f"v{v}: {t['answered']} images, accuracy {t['accuracy']:.3f}"
            for v, t in sorted(traffic["by_version"].items())
        )
        say(
            f"served {traffic['requests']} held-out images on 127.0.0.1 (production 80 / "
            f"int8 candidate 20) in {traffic['seconds']:.1f} s: {parts}"
        )
        out = {
            "dataset": ds.ref,
            "plain": {"ref": mv1.ref, "metrics": plain.metrics, "robustness": r1},
            "hardened": {"ref": mv2.ref, "metrics": hard.metrics, "robustness": r2},
            "int8": int8,
            "tradeoff": tradeoff.to_dict(),
            "traffic": traffic,
        }
    return out


def _size_line(rows: dict[str, Any]) -> str:
    sizes = [(k, r.get("bytes")) for k, r in rows.items() if r.get("bytes")]
    return ", ".join(f"{k} {b / 1024:.0f} KB" for k, b in sizes) or "sizes in the trade-off"
