"""Shared pieces of the README renderers: the run line under every table, formatting.

``meta_line(data, json_name)`` says what machine, threads, torch and load average a
benchmark JSON records, from its ``"meta"`` block (``benchmarks/_meta.py``) or, for
JSONs written before it existed, from whatever legacy keys it has; what is absent is
said to be "not recorded", never guessed.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any


class ClaimError(ValueError):
    """A sentence a renderer prints no longer holds for the JSON: rewrite the renderer."""


def claim(ok: bool, text: str) -> None:
    """Stop rendering when a claim in a generated sentence is false for this JSON."""
    if not ok:
        raise ClaimError(f"claim no longer holds: {text}")


def _legacy(data: dict[str, Any], key: str) -> Any:
    """``data[key]``, else ``data["machine"][key]`` when "machine" is a dict."""
    if key in data:
        return data[key]
    machine = data.get("machine")
    if isinstance(machine, dict):
        return machine.get(key)
    return None


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def run_fields(data: dict[str, Any]) -> dict[str, Any]:
    """What a JSON records about its run, each None when it does not.

    Keys: ``cpu`` (the CPU model), ``machine`` (an architecture or platform string,
    shown when the model is absent), ``cores``, ``threads`` (an int, or a list when the
    benchmark ran at several counts), ``torch``, ``load`` (a list: 1 / 5 / 15 min, or
    only the 1-minute value).
    """
    meta = data.get("meta")
    if isinstance(meta, dict):
        load = meta.get("load_average_1_5_15min")
        threads = meta.get("threads_run") or meta.get("threads")
        return {
            "cpu": meta.get("cpu"),
            "machine": meta.get("arch") or meta.get("platform"),
            "cores": meta.get("cores"),
            "threads": threads,
            "torch": meta.get("torch"),
            "load": list(load) if load is not None else None,
        }
    machine = data.get("machine")
    cpu = where = None
    if isinstance(machine, str):  # legacy: platform.machine(), an architecture
        where = machine
    elif isinstance(machine, dict):
        cpu, where = machine.get("cpu"), machine.get("arch") or machine.get("platform")
    load = _legacy(data, "load_avg")
    if load is None:
        load = _legacy(data, "load_average_1min")
    if load is not None and not isinstance(load, list | tuple):
        load = [load]
    return {
        "cpu": cpu,
        "machine": where,
        "cores": _legacy(data, "cores") or _legacy(data, "cpu_count"),
        "threads": _legacy(data, "threads"),
        "torch": _legacy(data, "torch"),
        "load": list(load) if load is not None else None,
    }


def _threads(threads: Any) -> str:
    if isinstance(threads, list | tuple):
        counts = [str(t) for t in threads]
        return f"{_join(counts)} thread" + ("" if counts == ["1"] else "s")
    return f"{threads} thread" + ("" if threads == 1 else "s")


def json_path(json_name: str) -> str:
    """``"rope.json"`` -> ``"benchmarks/results/rope.json"`` (a path is kept as it is)."""
    return json_name if "/" in json_name else f"benchmarks/results/{json_name}"


def meta_line(data: dict[str, Any], json_name: str | None = None) -> str:
    """The run line every generated block ends with, from what the JSON records.

    ``"Run: <cpu>, 2 cores, 1 thread, torch 2.13.0+cpu, load a / b / c (<json>)"``,
    from the ``"meta"`` block ``benchmarks/_meta.py`` writes or, in a JSON written
    before it, from the legacy keys (``threads``, ``torch``, ``machine`` as a string or
    a dict, ``cpu_count``, ``load_avg``, ``load_average_1min``). What the JSON lacks is
    listed as "not recorded", never filled in.

    Args:
        data: the parsed JSON.
        json_name: its file name under benchmarks/results/ (or a repository-relative
            path), named at the end of the line; default ``data["_json"]``, which
            ``readme_tables.py`` sets; neither: no name.
    """
    f = run_fields(data)
    have: list[str] = []
    missing: list[str] = []
    if f["cpu"]:
        have.append(str(f["cpu"]))
    else:
        if f["machine"]:
            have.append(str(f["machine"]))
        missing.append("CPU model")
    if f["cores"]:
        have.append(f"{f['cores']} core" + ("" if f["cores"] == 1 else "s"))
    else:
        missing.append("cores")
    if f["threads"] is not None and f["threads"] != []:
        have.append(_threads(f["threads"]))
    else:
        missing.append("threads")
    if f["torch"]:
        have.append(f"torch {f['torch']}")
    else:
        missing.append("torch version")
    load = f["load"]
    if load and len(load) == 3:
        have.append("load " + " / ".join(f"{v:.2f}" for v in load))
    elif load and len(load) == 1:
        have.append(f"load {load[0]:.2f} (1 min)")
    else:
        missing.append("load average")
    text = ", ".join(have)
    if missing:
        text += ("; " if text else "") + _join(missing) + " not recorded"
    source = json_path(json_name) if json_name else data.get("_json")
    return f"Run: {text}" + (f" ({source})" if source else "")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "---") -> str:
    """A Markdown table (every column aligned with ``align``)."""

    def line(cells: Sequence[str]) -> str:
        return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"

    return "\n".join([line(header), "|" + "|".join([align] * len(header)) + "|", *map(line, rows)])


def para(text: str, width: int = 88) -> str:
    """A prose paragraph wrapped at ``width`` (breaking at spaces only)."""
    text = " ".join(text.split())
    return textwrap.fill(text, width, break_long_words=False, break_on_hyphens=False)


def bullet(text: str, width: int = 88) -> str:
    """A Markdown list item wrapped at ``width``, continuation lines indented by 2."""
    text = " ".join(text.split())
    return textwrap.fill(
        text,
        width,
        initial_indent="- ",
        subsequent_indent="  ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def span(lo: str, hi: str) -> str:
    """Two formatted ends as "lo–hi", or one value when they read the same."""
    return lo if lo == hi else f"{lo}–{hi}"


def pct(x: float, digits: int = 1) -> str:
    """0.8265 -> "82.7" (percent, no sign)."""
    return f"{100 * x:.{digits}f}"


def thousands(x: float) -> str:
    """4337.09 -> "4,337"."""
    return f"{x:,.0f}"
