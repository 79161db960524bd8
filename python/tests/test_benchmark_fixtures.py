"""The six committed `llm-mem benchmark` parity fixtures (tests/fixtures/tasks/expected_*.json,
made by lm-eval's HF backend) replayed through the lm-eval backend: every request's token ids
as lm-eval built them (`_encode_pair`, the prefix token, rolling windows as lm_eval.utils
cuts them) and every loglikelihood / greedy flag under the base model and the two bypass
settings within tests/benchmark_parity.rs's tolerance of lm-eval's float64 run."""

import json

import pytest

from llm_mem.lm_eval_backend import LLMMemLM, ScorePool, rolling_windows_reference
from llm_mem.model import Model

from conftest import BENCH_MODELS, FIXTURES, ll_close

MODELS = ["neox", "neo", "llama", "gpt2", "olmo2", "opt"]


class Req:
    def __init__(self, *args):
        self.args = args


@pytest.mark.parametrize("name", MODELS)
def test_requests_and_answers_equal_lm_eval(name):
    exp = json.loads((FIXTURES / "tasks" / f"expected_{name}.json").read_text())
    model = Model.from_pretrained(str(BENCH_MODELS / name))
    assert model._native.max_length == exp["max_length"]
    assert model._native.prefix_token_id == exp["prefix_token_id"]
    labels = ["base" if not s else "attn:" + ",".join(map(str, s)) for s in exp["settings"]]
    pool = ScorePool(model, [model.settings(None, None, [l])[-1] for l in labels], 32,
                     progress=False)
    lms = [LLMMemLM(pool=pool, setting=pool.settings[i], progress=False)
           for i in range(len(labels))]
    plain = [r for r in exp["requests"] if "windows" not in r]
    rolling = [r for r in exp["requests"] if "windows" in r]
    assert plain and rolling

    for r in plain:
        ctx, cont = model._native.encode_pair(r["context"], r["continuation"])
        assert (ctx, cont) == (r["context_enc"], r["continuation_enc"]), r
    for r in rolling:
        windows = json.loads(r["windows"]) if isinstance(r["windows"], str) else r["windows"]
        ours = [list(map(list, w)) for w in model._native.rolling_windows(r["text"])]
        assert ours == [list(map(list, w)) for w in windows], r["task"]
        assert [list(map(list, w)) for w in rolling_windows_reference(model, r["text"])] == ours

    index = {id(r): i for i, r in enumerate(exp["requests"])}
    for s, lm in enumerate(lms):
        answers = exp["answers"][s]
        got = lm.loglikelihood([Req(r["context"], r["continuation"]) for r in plain])
        for r, (ll, greedy) in zip(plain, got):
            ll_ref, greedy_ref = answers[index[id(r)]]
            assert ll_close(ll, ll_ref), f"{name} {labels[s]} {r['task']}: {ll} vs {ll_ref}"
            assert greedy == greedy_ref, f"{name} {labels[s]} {r['task']}: greedy"
        got = lm.loglikelihood_rolling([Req(r["text"]) for r in rolling])
        for r, ll in zip(rolling, got):
            [ll_ref] = answers[index[id(r)]]
            assert ll_close(ll, ll_ref), f"{name} {labels[s]} wikitext: {ll} vs {ll_ref}"
