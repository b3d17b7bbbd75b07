"""Print the README's results tables from the metrics of the last run: `python -m wm.report`."""
import json
from pathlib import Path


def main():
    evaluation = json.loads(Path("metrics/eval.json").read_text())
    tracks = len(evaluation["test_seeds"])
    print(f"| policy | mean +- std over {tracks} test tracks | min | max |\n|---|---|---|---|")
    for name in ("controller", "ppo", "random"):
        r = evaluation[name]
        print(f"| {name} | {r['mean']:.1f} +- {r['std']:.1f} | {r['min']:.1f} | {r['max']:.1f} |")
    print("\n| stage | seconds (work inside the stage) |\n|---|---|")
    for stage, path in [("ppo", "ppo/metrics.json"), ("collect", "collect.json"),
                        ("vae", "vae/metrics.json"), ("encode", "encode.json"),
                        ("mdnrnn", "mdnrnn/metrics.json"), ("controller", "controller/metrics.json"),
                        ("evaluate", "eval.json"), ("dream", "dream.json")]:
        print(f"| {stage} | {json.loads((Path('metrics') / path).read_text())['seconds']} |")


if __name__ == "__main__":
    main()
