"""The notebook API: import, settings, the model, memorize as DataFrames and as the CLI's file."""

import json
import sys

import numpy as np
import pytest

import llm_mem
from llm_mem import _native

from conftest import BENCH_MODELS, builtin_dir, cli


def test_import_without_torch():
    assert "torch" not in sys.modules
    assert llm_mem.__version__


def test_parse_setting_gives_the_canonical_label():
    assert llm_mem.parse_setting("base") == "base"
    assert llm_mem.parse_setting("mlp:3=mean+attn:2,1") == "attn:1-2+mlp:3=mean"
    assert llm_mem.parse_setting("head:5.3,5.4") == "head:5.3-4"


@pytest.mark.parametrize("spec, message", [
    ("attn:", "--ablate \"attn:\": term \"attn:\""),
    ("foo:1", "unknown site \"foo\""),
    ("attn:1=median", "unknown kind"),
    ("", "--ablate \"\": term \"\": empty term"),
])
def test_parse_setting_refuses_with_the_cli_message(spec, message):
    with pytest.raises(ValueError) as err:
        llm_mem.parse_setting(spec)
    text = str(err.value)
    assert message in text and "\n" not in text


def test_builtin_model_config_and_tokens(tiny):
    cfg = tiny.cfg
    assert (cfg.n_layers, cfg.architecture) == (8, "GPTNeoXForCausalLM")
    assert cfg.n_heads > 0 and cfg.d_model > 0 and cfg.d_vocab > 0 and cfg.n_ctx >= 64
    ids = tiny.to_tokens("Tom had a kite.")
    assert ids.shape[0] == 1 and ids.dtype == np.int64
    assert tiny.to_string(ids[0]) == "Tom had a kite."
    assert tiny.to_string(ids) == ["Tom had a kite."]


def test_settings_follow_the_cli_sweep(tiny):
    assert tiny.settings("attn", 2) == ["base", "attn:0", "attn:1"]
    assert tiny.settings(None, None, ["mlp:1=mean"]) == ["base", "mlp:1=mean"]
    assert tiny.settings(["attn", "mlp=zero"], 1) == ["base", "attn:0", "mlp:0"]


def test_bad_input_raises_one_line_errors(tiny):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        llm_mem.Model.from_pretrained("./no/such/model")
    with pytest.raises(ValueError, match="2-D"):
        tiny.memorize(np.zeros(10, dtype=np.int64))
    with pytest.raises(ValueError, match="integer"):
        tiny.memorize(np.zeros((2, 64)))
    with pytest.raises(ValueError, match="--prefix-len 64"):
        tiny.memorize(np.zeros((2, 64), dtype=np.int64), prefix_len=64)
    with pytest.raises(ValueError, match="vocab_size"):
        tiny.memorize(np.full((2, 64), 10**6, dtype=np.int64))
    with pytest.raises(ValueError, match="exceeds the model's 8 layers"):
        tiny.memorize(np.zeros((2, 64), dtype=np.int64), num_layers=9)
    with pytest.raises(ValueError, match="--sweep \"nope\""):
        tiny.memorize(np.zeros((2, 64), dtype=np.int64), sweep="nope")


def test_a_rust_panic_is_a_runtime_error_and_the_interpreter_goes_on(tiny):
    with pytest.raises(RuntimeError) as err:
        _native._panic_for_test("deliberate")
    assert str(err.value) == "internal error in llm-mem (please report it): deliberate"
    # The interpreter and a loaded model still work after the panic.
    assert llm_mem.parse_setting("attn:1") == "attn:1"
    assert tiny.to_string(tiny.to_tokens("Tom had a kite.")[0]) == "Tom had a kite."


def test_console_script_runs_the_cli():
    done = cli("--version")
    assert done.returncode == 0 and done.stdout.startswith("llm-mem ")
    done = cli("memorize", "--prefix-len", "0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        done.stderr.strip()] and done.stderr.startswith("error: --prefix-len 0")


def test_memorize_equals_the_cli(tiny, tmp_path):
    data = tmp_path / "rows.npy"
    rows = np.load(builtin_dir() / "memorized.npy")[:12].astype(np.int64)
    np.save(data, rows)
    out = tmp_path / "cli.json"
    done = cli("memorize", "--dataset-path", str(data), "--model-path",
               str(builtin_dir()), "--num-layers", "2", "--ablate", "mlp:1=mean",
               "--ablate", "head:0.1=zero", "--per-sample", "--kl-from-base",
               "--batch-size", "5", "--output", str(out))
    assert done.returncode == 0, done.stderr
    theirs = json.loads(out.read_text())

    result = tiny.memorize(rows, settings=["mlp:1=mean", "head:0.1=zero"], num_layers=2,
                           per_sample=True, kl_from_base=True, batch_size=5, progress=False)
    ours = json.loads(json.dumps(result.report))
    assert ours["results"] == theirs["results"]
    assert ours["model"]["architecture"] == theirs["model"]["architecture"]
    assert ours["data"]["num_samples"] == 12

    summary = result.summary
    assert list(summary["setting"]) == ["base", "attn:0", "attn:1", "mlp:1=mean",
                                        "head:0.1=zero"]
    for entry, (_, row) in zip(theirs["results"], summary.iterrows()):
        assert row["exact_match"] == entry["exact_match"]
        assert row["kl_from_base"] == entry["kl_from_base"]
        assert np.array_equal(row["residual_deviation"], entry["residual_deviation"])
    samples = result.samples
    assert len(samples) == 5 * 12
    first = samples[samples["setting"] == "attn:1"].iloc[3]
    assert first["row"] == 3
    assert first["suffix_nll"] == theirs["results"][2]["per_sample"][3]["suffix_nll"]
    assert list(first["continuation"]) == theirs["results"][2]["per_sample"][3]["continuation"]
    assert all(len(c) == rows.shape[1] - 32 for c in samples["continuation"])

    path = tmp_path / "py.json"
    result.to_json(path)
    assert json.loads(path.read_text())["results"] == theirs["results"]


def test_memorize_without_sweep_and_mean_needs_no_mean_data(tiny):
    rows = np.load(builtin_dir() / "memorized.npy")[:3]
    result = tiny.memorize(rows, sweep=None, progress=False)
    assert list(result.summary["setting"]) == ["base"]
    with pytest.raises(ValueError, match="no per-sample scores"):
        result.samples


def test_ctrl_c_stops_at_the_next_batch_and_leaves_the_model_usable(tiny):
    import os
    import signal

    rows = np.load(builtin_dir() / "memorized.npy")[:8]
    labels = tiny.settings("attn", 1)
    calls = []

    def progress(total, done):
        calls.append(done)
        if len(calls) == 2:  # after the first batch: Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)

    # Python's own Ctrl-C handler, which it leaves out when started with SIGINT ignored (as a
    # shell's background jobs are).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            tiny._native.memorize(rows.astype("<u4").tobytes(), 8, rows.shape[1], 32, labels, 2,
                                  False, False, progress)
    finally:
        signal.signal(signal.SIGINT, before)
    # the start, then one batch: the interrupt is seen before the second batch is reported
    assert len(calls) == 2
    again = tiny.memorize(rows, sweep="attn", num_layers=1, batch_size=2, progress=False)
    assert list(again.summary["setting"]) == ["base", "attn:0"]


def test_progress_callback_errors_stop_the_run(tiny):
    rows = np.load(builtin_dir() / "memorized.npy")[:4]

    def progress(total, done):
        raise RuntimeError("from the callback")

    with pytest.raises(RuntimeError, match="from the callback"):
        tiny._native.memorize(rows.astype("<u4").tobytes(), 4, rows.shape[1], 32, ["base"], 2,
                              False, False, progress)


def test_lm_eval_device_falls_back_to_the_cpu_with_a_warning():
    from llm_mem.lm_eval_backend import LLMMemLM

    if _native.cuda_available():
        pytest.skip("this build and machine have CUDA")
    with pytest.warns(UserWarning, match="cuda:0: no CUDA"):
        lm = LLMMemLM(pretrained=str(BENCH_MODELS / "llama"), device="cuda:0")
    assert lm.device == "cpu"
    # tok_encode as the HF backend's: the tokenizer's default (<s> for this Llama), or as asked
    ids = lm.tok_encode("hello world")
    assert ids[0] == lm.prefix_token_id
    assert lm.tok_encode("hello world", add_special_tokens=False) == ids[1:]
    with pytest.raises(ValueError, match="unknown colour"):
        LLMMemLM(pretrained=str(BENCH_MODELS / "llama"), device="cpu", colour="red")
