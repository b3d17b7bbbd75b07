"""Print the README's results tables from the metrics of the last run: `python -m wm.report`."""
import json
from pathlib import Path

POLICIES = [("controller", "world model, controller on z and h (gymnasium)"),
            ("controller_envpool", "world model, controller on z and h (envpool, same seeds)"),
            ("controller_z", "world model, controller on z only"),
            ("ppo_baseline", "PPO, the world model's training time"),
            ("ppo", "PPO of the data collection"),
            ("random", "random policy")]
STAGE_SECONDS = [("ppo", "ppo/metrics.json"), ("ppo_baseline", "ppo_baseline/metrics.json"),
                 ("collect", "collect.json"), ("vae", "vae/metrics.json"), ("encode", "encode.json"),
                 ("mdnrnn", "mdnrnn/metrics.json"), ("controller", "controller/metrics.json"),
                 ("controller_z", "controller_z/metrics.json"), ("evaluate", "eval.json"),
                 ("dream", "dream.json")]


def main():
    evaluation = json.loads(Path("metrics/eval.json").read_text())
    tracks = len(evaluation["test_seeds"])
    print(f"| policy | mean +- std over {tracks} test tracks | min | max |\n|---|---|---|---|")
    for name, label in POLICIES:
        if name in evaluation:
            r = evaluation[name]
            print(f"| {label} | {r['mean']:.1f} +- {r['std']:.1f} | {r['min']:.1f} | {r['max']:.1f} |")
    print("\n| stage | seconds (work inside the stage) |\n|---|---|")
    for stage, path in STAGE_SECONDS:
        path = Path("metrics") / path
        if path.exists():
            print(f"| {stage} | {json.loads(path.read_text())['seconds']} |")


if __name__ == "__main__":
    main()
