"""README table renderers, one module per benchmark (discovered by ``readme_tables.py``).

Every module here whose name does not start with ``_`` defines

    TABLES: dict[str, tuple[str | None, Callable[[dict], str]]]

mapping a table NAME (the name in the README's ``<!-- begin table: NAME ... -->``
marker) to ``(json file name under benchmarks/results/, render function)``. The render
function gets the parsed JSON (plus ``"_json"``, its repository-relative path) and
returns the Markdown between the markers; its last line is
``tables._common.meta_line(data, json_name)``, the run that produced the JSON. A json
name of None means the table is computed by a deterministic function, not measured
(the function gets ``{}`` and has no run line: ``attention_cost``).
"""
