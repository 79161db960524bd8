"""`llm_mem.evaluate` on the built-in model's two tasks equals `llm-mem benchmark` bit for bit
(same engine, same requests in the same order, so the same batches; lm-eval aggregates them
as the command line's own metrics code does), and the lm-eval command line with the backend."""

import json
import subprocess
import sys

import pytest

import llm_mem
from llm_mem.lm_eval_backend import USE_CACHE_REFUSED

from conftest import LM_EVAL


@pytest.fixture(scope="module")
def both(tmp_path_factory, tiny):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    done = subprocess.run([sys.executable, "-c", "import sys, llm_mem.cli as c; c.main()",
                           "benchmark", "--num-layers", "1", "--ablate", "head:2.1=zero",
                           "--limit", "60", "--output", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = llm_mem.evaluate(tiny, ["tiny_storycloze", "tiny_lambada"], ["head:2.1=zero"],
                              sweep="attn", num_layers=1, limit=60, progress=False)
    return json.loads(out.read_text()), result


def test_every_metric_equals_the_cli_bit_for_bit(both):
    cli, result = both
    ours = result.benchmark_report()
    assert [r["setting"] for r in ours["results"]] == [r["setting"] for r in cli["results"]]
    assert [r["setting"] for r in cli["results"]] == ["base", "attn:0", "head:2.1=zero"]
    for mine, theirs in zip(ours["results"], cli["results"]):
        assert mine.get("bypass") == theirs.get("bypass")
        assert mine["interventions"] == theirs["interventions"]
        for task, metrics in theirs["tasks"].items():
            assert mine["tasks"][task] == metrics, f"{theirs['setting']} {task}"
    assert [t["num_docs"] for t in ours["tasks"]] == [t["num_docs"] for t in cli["tasks"]]
    assert ours["config"] == cli["config"]
    assert ours["model"] == cli["model"] | {"path": ours["model"]["path"]}


def test_summary_and_results(both, tmp_path):
    _, result = both
    summary = result.summary
    assert set(summary["setting"]) == {"base", "attn:0", "head:2.1=zero"}
    acc = summary[(summary.task == "tiny_lambada") & (summary.metric == "acc")]
    assert len(acc) == 3 and acc["stderr"].notna().all()
    assert result.results["base"]["results"]["tiny_lambada"]["acc,none"] == float(
        acc[acc.setting == "base"]["value"].iloc[0])
    path = tmp_path / "b.json"
    result.to_json(path)
    assert json.loads(path.read_text())["results"][0]["setting"] == "base"


def test_use_cache_is_refused(tiny):
    with pytest.raises(ValueError, match="keys on the request alone"):
        llm_mem.evaluate(tiny, ["tiny_lambada"], use_cache="/tmp/x")


def test_mean_setting_without_mean_data_is_refused(tiny):
    with pytest.raises(ValueError, match="needs mean_data"):
        llm_mem.evaluate(tiny, ["tiny_lambada"], ["mlp:1=mean"], limit=2, progress=False)


def lm_eval_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-c", "import sys, llm_mem.cli as c; "
                           "sys.argv[0] = 'llm-mem-lm-eval'; c.lm_eval_main()", *args],
                          capture_output=True, text=True, cwd=cwd)


def test_lm_eval_command_line_runs_two_settings_offline(tmp_path):
    out = tmp_path / "out"
    done = lm_eval_cli("--model", "llm-mem", "--model_args",
                       f"pretrained={LM_EVAL.parent / 'bench-models' / 'neox'},"
                       "settings=attn:1,sweep=none",
                       "--tasks", "copa_local", "--include_path", str(LM_EVAL / "tasks"),
                       "--output_path", str(out), cwd=LM_EVAL / "tasks")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "llm-mem-benchmark.json").read_text())
    assert [r["setting"] for r in report["results"]] == ["base", "attn:1"]
    assert "acc,none" in report["results"][1]["tasks"]["copa_local"]
    for label in ("base", "attn:1"):
        assert list((out / label).rglob("results_*.json")), label


def test_lm_eval_command_line_refuses_use_cache(tmp_path):
    done = lm_eval_cli("--model", "llm-mem", "--tasks", "copa_local", "--use_cache",
                       str(tmp_path / "c"))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {USE_CACHE_REFUSED}"
