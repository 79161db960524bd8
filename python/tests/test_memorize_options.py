"""`Model.memorize`'s optional measurements (sampling and discoverable extraction, edit
similarity, the logit lens, a control set) on the built-in model: the command line's numbers,
the invariants that pin them, and bad values refused with the command line's one-line message
before any work."""

import contextlib
import json
import math

import numpy as np
import pytest

import llm_mem.model
from conftest import builtin_dir, cli

PREFIX_LEN = 32
SETTINGS = ["head:0.1=zero", "mlp:1=mean"]


@pytest.fixture(scope="module")
def rows():
    """The first memorized rows of the built-in model: 32 prompt and 32 suffix tokens each."""
    return np.load(builtin_dir() / "memorized.npy")[:12].astype(np.int64)


@pytest.fixture(scope="module")
def control_rows(tiny):
    """Random token rows of another length: text the model did not memorize."""
    return np.random.default_rng(0).integers(0, tiny.cfg.d_vocab, size=(6, 40))


def run(model, rows, **options):
    """The base model, attention bypassed in blocks 0 and 1, and `SETTINGS`, 5 rows a batch."""
    return model.memorize(rows, prefix_len=PREFIX_LEN, settings=SETTINGS, num_layers=2,
                          batch_size=5, progress=False, **options)


def test_every_option_gives_the_command_lines_file(tiny, rows, control_rows, tmp_path):
    data, control = tmp_path / "rows.npy", tmp_path / "control.npy"
    np.save(data, rows)
    np.save(control, control_rows)
    out = tmp_path / "cli.json"
    args = ["memorize", "--model-path", str(builtin_dir()), "--dataset-path", str(data),
            "--num-layers", "2", "--batch-size", "5", "--per-sample", "--output", str(out),
            "--sampling", "0.8,top_k=40", "--discoverable", "10,0.25", "--logit-lens",
            "--control-path", str(control)]
    for setting in SETTINGS:
        args += ["--ablate", setting]
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    theirs = json.loads(out.read_text())["results"]

    result = run(tiny, rows, per_sample=True, sampling=(0.8, 40), discoverable=(10, 0.25),
                 logit_lens=True, control=control_rows)
    assert result.report["results"] == theirs
    columns = set(result.summary.columns)
    for name in ["edit_similarity", "extraction_log10_prob", "extraction_impossible_rows",
                 "discoverable", "control_nll", "control_ppl", "control_tf_accuracy"]:
        assert name in columns, name
    for name in ["edit_similarity", "extraction_log10_prob", "discoverable"]:
        assert name in result.samples.columns, name


def levenshtein(a, b) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a):
        current = [i + 1]
        for j, y in enumerate(b):
            current.append(min(previous[j] + (x != y), previous[j + 1] + 1, current[j] + 1))
        previous = current
    return previous[-1]


def test_extraction_at_temperature_one_is_the_suffix_likelihood(tiny, rows):
    n, p = 3, 0.5
    result = run(tiny, rows, per_sample=True, sampling=1.0, discoverable=(n, p))
    samples, summary = result.samples, result.summary
    suffix_len = rows.shape[1] - PREFIX_LEN
    expected = -suffix_len * samples["suffix_nll"] / math.log(10)
    assert np.allclose(samples["extraction_log10_prob"], expected, rtol=1e-6, atol=0)

    p_row = 10.0 ** samples["extraction_log10_prob"]
    at_least_once = -np.expm1(n * np.log1p(-p_row))
    assert list(samples["discoverable"]) == list(at_least_once >= p)
    # Both outcomes occur: the check above compares something.
    assert samples["discoverable"].any() and not samples["discoverable"].all()

    for _, setting in summary.iterrows():
        mine = samples[samples["setting"] == setting["setting"]]
        assert setting["extraction_impossible_rows"] == 0
        assert setting["extraction_log10_prob"] == pytest.approx(
            mine["extraction_log10_prob"].mean(), rel=1e-12)
        assert setting["discoverable"] == pytest.approx(mine["discoverable"].mean(), rel=1e-12)
        for _, sample in mine.iterrows():
            suffix = rows[sample["row"], PREFIX_LEN:]
            distance = levenshtein(list(sample["continuation"]), list(suffix))
            assert sample["edit_similarity"] == pytest.approx(1 - distance / suffix_len,
                                                              rel=1e-12)


def test_top_k_one_samples_only_the_greedy_suffix(tiny, rows):
    """With top_k=1 sampling is greedy decoding: the suffix comes out with probability 1 when
    the teacher-forced argmax is right at every position, else never."""
    samples = run(tiny, rows, per_sample=True, sampling="1,top_k=1").samples
    reproduced = samples["teacher_forced_accuracy"] == 1.0
    assert reproduced.any() and not reproduced.all()
    log10 = samples["extraction_log10_prob"]
    assert np.all(np.isneginf(log10[~reproduced]))
    assert np.allclose(log10[reproduced], 0.0, rtol=0, atol=1e-9)
    assert list(samples["exact_match"]) == list(reproduced)
    summary = run(tiny, rows, sampling=(1.0, 1)).summary
    impossible = samples.groupby("setting", sort=False)["extraction_log10_prob"].apply(
        lambda v: int(np.isneginf(v).sum()))
    assert list(summary["extraction_impossible_rows"]) == list(impossible)


def test_top_k_of_the_whole_vocabulary_is_plain_sampling(tiny, rows):
    plain = run(tiny, rows, per_sample=True, sampling=1.0).samples
    whole = run(tiny, rows, per_sample=True, sampling=(1.0, tiny.cfg.d_vocab)).samples
    assert np.allclose(whole["extraction_log10_prob"], plain["extraction_log10_prob"],
                       rtol=1e-6, atol=0)


def test_the_lens_after_the_last_block_is_the_models_own_pass(tiny, rows):
    result = run(tiny, rows, per_sample=True, logit_lens=True)
    lens, summary = result.lens, result.summary
    n_layers = tiny.cfg.n_layers
    assert list(lens.columns) == ["setting", "block", "lens_accuracy", "lens_logprob"]
    assert list(lens["setting"]) == [s for s in summary["setting"] for _ in range(n_layers)]
    assert list(lens["block"]) == list(range(n_layers)) * len(summary)
    assert lens["lens_accuracy"].between(0, 1).all() and (lens["lens_logprob"] <= 0).all()

    last = lens[lens["block"] == n_layers - 1].reset_index(drop=True)
    assert list(last["lens_accuracy"]) == list(summary["teacher_forced_accuracy"])
    assert np.allclose(last["lens_logprob"], -summary["suffix_nll"], rtol=1e-12, atol=0)
    samples = result.samples
    assert all(len(a) == n_layers for a in samples["lens_accuracy"])
    assert [a[-1] for a in samples["lens_accuracy"]] == list(samples["teacher_forced_accuracy"])
    assert np.allclose([a[-1] for a in samples["lens_logprob"]], -samples["suffix_nll"],
                       rtol=1e-12, atol=0)

    # Bypassing block 1's attention leaves the residual stream after block 0 as it was.
    by_setting = lens.set_index(["setting", "block"])
    assert by_setting.loc[("attn:1", 0)].equals(by_setting.loc[("base", 0)])
    assert not by_setting.loc[("attn:1", 1)].equals(by_setting.loc[("base", 1)])

    with pytest.raises(ValueError, match="run memorize with logit_lens=True"):
        run(tiny, rows[:2]).lens


def test_control_numbers_equal_a_separate_run_over_the_control_rows(tiny, rows, control_rows,
                                                                    tmp_path):
    summary = run(tiny, rows, control=control_rows).summary
    separate = run(tiny, control_rows).summary
    assert list(summary["setting"]) == list(separate["setting"])
    # math.exp is the C library's, as the engine's (numpy's own may differ in the last bit).
    assert list(summary["control_ppl"]) == [math.exp(v) for v in summary["control_nll"]]
    mean_ablations = 0
    for (_, mine), (_, theirs) in zip(summary.iterrows(), separate.iterrows()):
        if mine["setting"].endswith("=mean"):
            # The data's means, not the control rows' own.
            mean_ablations += 1
            assert mine["control_nll"] != theirs["suffix_nll"]
            continue
        assert mine["control_nll"] == theirs["suffix_nll"], mine["setting"]
        assert mine["control_tf_accuracy"] == theirs["teacher_forced_accuracy"], mine["setting"]
    assert mean_ablations == 1

    path = tmp_path / "control.npy"
    np.save(path, control_rows)
    from_file = run(tiny, rows, control=path).summary
    columns = ["control_nll", "control_ppl", "control_tf_accuracy"]
    assert from_file[columns].equals(summary[columns])


@contextlib.contextmanager
def no_work_allowed(monkeypatch):
    """Fail the test if the engine reports any progress: bad input is refused before it."""
    calls = []

    @contextlib.contextmanager
    def recording_bar(enabled, desc, unit):
        yield lambda total, done: calls.append((total, done))

    monkeypatch.setattr(llm_mem.model, "bar", recording_bar)
    yield
    assert calls == [], "work began before the bad value was refused"


def short_control_file(tmp_path):
    path = tmp_path / "short.npy"
    np.save(path, np.zeros((3, PREFIX_LEN), dtype=np.int32))
    return path


@pytest.mark.parametrize("options, message", [
    (dict(sampling="0"), "--sampling 0: the temperature must be greater than 0"),
    (dict(sampling=-1.5), "--sampling -1.5: the temperature must be greater than 0"),
    (dict(sampling=(0.0, None)), "--sampling 0.0: the temperature must be greater than 0"),
    (dict(sampling="1,top_k=0"), "--sampling 1,top_k=0: top_k must be at least 1"),
    (dict(sampling=(0.7, 0)), "--sampling 0.7,top_k=0: top_k must be at least 1"),
    (dict(sampling=1, discoverable=(0, 0.5)), "--discoverable 0,0.5: N must be at least 1"),
    (dict(discoverable=(10, 0.0)), "--discoverable 10,0.0: P must be strictly between 0 and 1"),
    (dict(discoverable=(10, 1)), "--discoverable 10,1: P must be strictly between 0 and 1"),
    (dict(discoverable="10,1.5"), "--discoverable 10,1.5: P must be strictly between 0 and 1"),
    (dict(control=np.zeros((3, PREFIX_LEN), dtype=np.int64)),
     "control: control rows of 32 tokens are not longer than --prefix-len 32"),
    (dict(control=np.full((2, 40), 1024, dtype=np.int64)),
     "control: row 0, column 0: token id 1024 is not below the model's vocab_size 1024"),
    (dict(control=np.zeros(40, dtype=np.int64)),
     "control: expected a 2-D array (one sample per row), got 1-D"),
    (dict(control=short_control_file),
     "control {path}: control rows of 32 tokens are not longer than --prefix-len 32"),
])
def test_bad_values_are_refused_with_the_command_lines_message(tiny, rows, tmp_path, monkeypatch,
                                                               options, message):
    if callable(options.get("control")):
        options["control"] = options["control"](tmp_path)
        message = message.format(path=options["control"])
    with no_work_allowed(monkeypatch), pytest.raises(ValueError) as err:
        tiny.memorize(rows[:2], prefix_len=PREFIX_LEN, sweep=None, progress=True, **options)
    assert str(err.value) == message
    # The interpreter and the model go on.
    assert list(tiny.memorize(rows[:1], sweep=None, progress=False).summary["setting"]) == [
        "base"]


def test_a_missing_control_file_is_file_not_found(tiny, rows, tmp_path):
    missing = tmp_path / "none.npy"
    with pytest.raises(FileNotFoundError) as err:
        tiny.memorize(rows[:2], sweep=None, progress=False, control=missing)
    assert str(err.value) == f"control {missing}: no such file"
