"""`structmat retrieve build|search`: results equal the library's, one-line errors (exit 2)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from structmat.cli import main
from structmat.run_lock import acquire_lock
from tests.retrieval.tiny_bert import DATA, fixture_texts, make_tiny_bert

pytest.importorskip("transformers")
pytest.importorskip("safetensors")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("cli_bert"))


@pytest.fixture(scope="module")
def built(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli_index") / "index.safetensors"
    code = main(
        [
            "retrieve", "build",
            "--items", str(DATA / "items.txt"),
            "--anchor-queries", str(DATA / "queries.txt"),
            "--scorer", f"cross-encoder:{bert_dir}",
            "--out", str(out),
            "--batch-size", "40",
            "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    return out


def test_search_prints_what_the_library_finds(
    capsys: pytest.CaptureFixture[str], built: Path, bert_dir: Path
) -> None:
    from structmat.retrieval import CrossEncoderScorer, CURIndex

    items, queries = fixture_texts()
    query = "library for reading image files"
    code, out, err = _run(
        capsys, "retrieve", "search", "--index", str(built), "--query", query,
        "--k", "4", "--budget", "30", "--anchor-items", "12", "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    index = CURIndex.load(built, CrossEncoderScorer(str(bert_dir)))
    assert index.num_items == len(items) and index.anchor_queries == queries
    scores, ids = index.search(query, k=4, anchor_items=12, budget=30)
    assert result["query"] == query
    assert [h["id"] for h in result["results"]] == ids.tolist()
    torch.testing.assert_close(
        torch.tensor([h["score"] for h in result["results"]]), scores, rtol=1e-5, atol=1e-6
    )
    assert [h["text"] for h in result["results"]] == [items[j] for j in ids.tolist()]
    # plain text: one line per hit
    code, out, _ = _run(
        capsys, "retrieve", "search", "--index", str(built), "--query", query, "--k", "3"
    )
    assert code == 0 and len(out.splitlines()) == 3 and out.split()[0] == "1"


def test_queries_file_and_jsonl_items(
    capsys: pytest.CaptureFixture[str], bert_dir: Path, tmp_path: Path
) -> None:
    items_path = tmp_path / "items.jsonl"
    items_path.write_text(
        "\n".join(
            [json.dumps("plain string item"), json.dumps({"text": "object item", "id": 9}), "",
             json.dumps({"text": "third one"})]
        )
    )  # fmt: skip
    queries_path = tmp_path / "q.txt"
    queries_path.write_text("first query\n\nsecond query\n")
    out_path = tmp_path / "i.safetensors"
    code, _, err = _run(
        capsys, "retrieve", "build", "--items", str(items_path), "--anchor-queries",
        str(queries_path), "--scorer", f"bi-encoder:{bert_dir}", "--out", str(out_path),
        "--anchor-method", "kmeans", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "indexed 3 items with 2 anchor queries (6 scorer calls)" in err
    code, out, err = _run(
        capsys, "retrieve", "search", "--index", str(out_path), "--queries", str(queries_path),
        "--k", "2", "--budget", "3", "--anchor-items", "2", "--json",
    )  # fmt: skip
    assert code == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert [x["query"] for x in lines] == ["first query", "second query"]
    assert all(len(x["results"]) == 2 for x in lines)
    assert {h["text"] for x in lines for h in x["results"]} <= {
        "plain string item", "object item", "third one",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        (None, ".txt", r"--items .*missing.txt: no such file"),
        ("\n\n", ".txt", r"--items .*: no texts \(the file is empty\)"),
        ('"ok"\n{bad json\n', ".jsonl", r"--items .*:2: invalid JSON"),
        ('{"title": "no text"}\n', ".jsonl", r"--items .*:1: expected a JSON string or an object"),
        (b"\xff\xfe bad bytes", ".txt", r"--items .*: not UTF-8 text"),
        ('"ok"\n"  "\n', ".jsonl", r"--items .*:2: expected a text, got an empty one"),
        ('{"text": ""}\n', ".jsonl", r"--items .*:1: expected a text, got an empty one"),
    ],
)
def test_bad_item_files_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: object, suffix: str, message: str
) -> None:
    path = tmp_path / ("missing.txt" if content is None else f"items{suffix}")
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    code, out, err = _run(
        capsys, "retrieve", "build", "--items", str(path), "--anchor-queries",
        str(DATA / "queries.txt"), "--scorer", "cross-encoder:/nowhere", "--out",
        str(tmp_path / "i"),
    )  # fmt: skip
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("structmat retrieve: error: ")
    assert re.search(message, err), err


def test_other_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], built: Path, tmp_path: Path
) -> None:
    cases = [
        (["build", "--items", str(DATA / "items.txt"), "--anchor-queries",
          str(DATA / "queries.txt"), "--scorer", "magic:x", "--out", str(tmp_path / "i")],
         r"scorer: expected a kind in"),
        (["build", "--items", str(DATA / "items.txt"), "--anchor-queries",
          str(DATA / "queries.txt"), "--scorer", "cross-encoder:/nowhere", "--out",
          str(tmp_path / "no" / "i")], r"--out .*: the folder .* does not exist"),
        (["search", "--index", str(built)], r"give exactly one of --query TEXT or --queries FILE"),
        (["search", "--index", str(tmp_path / "none"), "--query", "x"],
         r"index file .*: expected an existing file"),
        (["search", "--index", str(built), "--query", "x", "--budget", "5"],
         r"budget: expected >= anchor_items \(50\)"),
        ([], r"give a verb: build or search"),
    ]  # fmt: skip
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(built.read_bytes()[:-10])
    cases.append((["search", "--index", str(damaged), "--query", "x"], r"expected a complete"))
    for argv, message in cases:
        code, out, err = _run(capsys, "retrieve", *argv)
        assert code == 2 and out == "", (argv, err)
        assert len(err.strip().splitlines()) == 1 and re.search(message, err), (argv, err)
    code, _, err = _run(capsys, "retrieve", "search", "--index", str(built), "--k", "0")
    assert code == 2 and "expected an integer >= 1, got 0" in err


def test_a_stale_partial_build_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], bert_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "idx.safetensors"
    (tmp_path / "idx.safetensors.partial").write_bytes(b"another build")
    (tmp_path / "idx.safetensors.partial.journal").write_bytes(b'{"build": "other"}\n')
    code, _, err = _run(
        capsys, "retrieve", "build", "--items", str(DATA / "items.txt"), "--anchor-queries",
        str(DATA / "queries.txt"), "--scorer", f"bi-encoder:{bert_dir}", "--out", str(out),
        "--no-progress",
    )  # fmt: skip
    assert code == 2 and "resuming from" in err
    assert (
        "expected a partial build of these inputs and settings, got another build's"
        in (err.splitlines()[-1])
    )
    assert not out.exists()


def nan_scorer(queries: list, items: list) -> torch.Tensor:
    """A broken scorer for the test below: NaN for the third item of every batch."""
    out = torch.ones(len(queries), len(items))
    out[:, 2:3] = float("nan")
    return out


def short_scorer(queries: list, items: list) -> torch.Tensor:
    """A broken scorer: one column too few."""
    return torch.ones(len(queries), max(0, len(items) - 1))


@pytest.mark.parametrize(
    ("name", "message"),
    [("nan_scorer", r"expected finite scores, got 20 NaN or infinite"),
     ("short_scorer", r"expected shape \(len\(queries\), len\(items\)\) = \(20, 40\), "
                      r"got shape \(20, 39\)")],
)  # fmt: skip
def test_a_broken_scorer_is_named_and_no_index_is_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, message: str
) -> None:
    out = tmp_path / "idx.safetensors"
    spec = f"python:tests.cli.test_retrieve:{name}"
    code, stdout, err = _run(
        capsys, "retrieve", "build", "--items", str(DATA / "items.txt"), "--anchor-queries",
        str(DATA / "queries.txt"), "--scorer", spec, "--out", str(out), "--batch-size", "40",
        "--no-progress",
    )  # fmt: skip
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1, err
    assert re.search(rf"error: scorer {re.escape(spec)}: {message}", err), err
    assert not out.exists()  # the partial file stays for a rerun, never as the index


def test_a_second_build_of_the_same_index_refuses(
    capsys: pytest.CaptureFixture[str], bert_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "idx.safetensors"
    argv = [
        "retrieve", "build", "--items", str(DATA / "items.txt"), "--anchor-queries",
        str(DATA / "queries.txt"), "--scorer", f"bi-encoder:{bert_dir}", "--out", str(out),
        "--no-progress",
    ]  # fmt: skip
    held = acquire_lock(tmp_path, ".idx.safetensors.lock")  # a build in progress
    try:
        code, _, err = _run(capsys, *argv)
    finally:
        held.release()
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "a directory no other run is using" in err and "in use by PID" in err
    assert not out.exists()
    # once the holder is gone the build runs, and leaves no lock file behind
    code, _, err = _run(capsys, *argv)
    assert code == 0 and out.exists(), err
    assert not (tmp_path / ".idx.safetensors.lock").exists()
