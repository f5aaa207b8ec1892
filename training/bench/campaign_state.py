"""What a campaign's compact state costs: one run in a single segment against the same run handed over from
its committed state (fp16 weights, bf16 optimizer moments) at every segment boundary, as on a fresh clone.

    python -m training.bench.campaign_state training/campaigns/bench-dual9.toml --segments 6 --out runs/bench-state

Both runs are the campaign of the given config (same seed, same data order); the handed-over one starts each
segment from an empty live folder, so it resumes from ``state.pt`` alone. Prints both runs' held-out metrics at
every validation and the final difference; the state's size on disk. Speed is not measured here.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from training.metrics import read_metrics
from training.stages.campaign import STATE_FILE, Campaign


def run_campaign(config: Path, folder: Path, segments: int, steps: int) -> list[dict]:
    """The campaign of ``config`` in ``folder``, in ``segments`` segments of ``steps`` (each from the committed
    state alone when ``segments`` > 1); its val rows."""
    if folder.exists():
        shutil.rmtree(folder)
    campaign = Campaign.create(config, folder / "campaign", folder / "live-0")
    for i in range(segments):
        live = folder / f"live-{i}"
        Campaign(campaign.folder, live).run_segment(max_steps=steps if i < segments - 1 else 0, progress=False)
    return [r for r in read_metrics(campaign.folder) if r["split"] == "val"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="a campaign config (its [config] holds the run's steps)")
    parser.add_argument("--segments", type=int, default=6)
    parser.add_argument("--steps", type=int, required=True, help="steps per segment (the last runs to the end)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-campaign-state"))
    args = parser.parse_args()
    whole = run_campaign(args.config, args.out / "whole", 1, 0)
    handed = run_campaign(args.config, args.out / "handed", args.segments, args.steps)
    names = [k for k in whole[-1] if k not in ("step", "split", "elapsed_s")]
    for a, b in zip(whole, handed):
        print(f"step {a['step']:6d}  " + "  ".join(f"{k} {a[k]:.4f} / {b[k]:.4f}" for k in names))
    size = (args.out / "handed" / "campaign" / STATE_FILE).stat().st_size
    print(json.dumps({"segments": args.segments, "final_whole": whole[-1], "final_handed": handed[-1],
                      "difference": {k: handed[-1][k] - whole[-1][k] for k in names},
                      "state_mb": round(size / 2**20, 2)}, indent=1))


if __name__ == "__main__":
    main()
