"""`simulate()`: the README example, option names, dict configs, request records, results."""

from __future__ import annotations

import csv
import json
import re

import pytest

from inference_serving import simulate
from inference_serving.request import Request
from llmsim_core.errors import InputError
from tests.conftest import REPO
from tests.test_cli_errors import run_main

EXAMPLE = "dataset/example_sharegpt_req100_rate10.jsonl"
SINGLE = "cluster_config/single_node_single_instance.json"


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def cli_rows(tmp_path, *args: str) -> tuple[list[list[str]], dict]:
    out, metrics = tmp_path / "cli.csv", tmp_path / "cli.json"
    done = run_main(["--dataset", EXAMPLE, "--output", str(out), "--metrics-json", str(metrics),
                     *args])
    assert done.returncode == 0, done.stderr
    with out.open(newline="") as handle:
        return list(csv.reader(handle))[1:], json.loads(metrics.read_text())


def test_readme_example_returns_the_cli_csv_and_metrics(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    scope: dict = {}
    exec(readme_example(), scope)
    results = scope["results"]
    printed = capsys.readouterr().out.splitlines()
    rows, metrics = cli_rows(tmp_path)
    assert len(results.requests) == 100
    assert [r.csv_row() for r in results.requests] == [
        (int(c[0]), int(c[1]), c[2], *map(int, c[3:11]), c[11]) for c in rows]
    assert results.summary == metrics
    first = results.requests[0]
    assert printed[0] == f"{first.request_id} {first.ttft} {first.tpot} {len(first.itl)}"
    assert len(first.itl) == first.output - first.input - 1


def test_simulate_prints_nothing_and_writes_the_cli_files_byte_for_byte(tmp_path, capsys):
    args = ["--cluster-config", "cluster_config/single_node_multi_instance.json",
            "--request-routing-policy", "RAND", "--log-interval", "0.2"]
    cli_rows(tmp_path, *args)
    results = simulate(REPO / "cluster_config/single_node_multi_instance.json",
                       dataset=REPO / EXAMPLE, request_routing_policy="RAND", log_interval=0.2,
                       output=tmp_path / "api.csv", metrics_json=str(tmp_path / "api.json"))
    assert capsys.readouterr() == ("", "")
    for cli, api in (("cli.csv", "api.csv"), ("cli.json", "api.json"),
                     ("cli_throughput.csv", "api_throughput.csv")):
        assert (tmp_path / cli).read_bytes() == (tmp_path / api).read_bytes(), cli
    # Two instances: the CSV lists instance 0's requests, then instance 1's.
    instances = [r.instance_id for r in results.requests]
    assert instances == sorted(instances) and set(instances) == {0, 1}
    series = (tmp_path / "api_throughput.csv").read_text().splitlines()[1:]
    assert [f"{w.time_s:g},{w.prompt_tok_s},{w.generation_tok_s}" for w in results.windows] \
        == series


def test_dict_config_and_request_records_match_the_file_run():
    by_file = simulate(SINGLE, dataset=EXAMPLE, num_req=20)
    config = json.loads((REPO / SINGLE).read_text())
    records = [json.loads(line) for line in (REPO / EXAMPLE).read_text().splitlines()[:20]]
    by_dicts = simulate(config, requests=records)
    objects = [Request(rid=99, arrival=r["arrival_time_ns"], prompt=r["input_toks"],
                       output=r["output_toks"]) for r in records]
    by_objects = simulate(config, requests=iter(objects))
    assert by_dicts.requests == by_file.requests == by_objects.requests
    assert by_dicts.summary == by_file.summary
    assert all(o.end == -1 for o in objects), "the caller's requests are not mutated"


def test_unsorted_records_are_sorted_with_a_diagnostic():
    records = [{"input_toks": 8, "output_toks": 2, "arrival_time_ns": t} for t in (5_000, 0)]
    results = simulate(SINGLE, requests=records)
    assert [r.request_id for r in results.requests] == [1, 0]
    assert len(results.diagnostics) == 1 and "not sorted" in results.diagnostics[0]


@pytest.mark.parametrize("options,message", [
    ({"max_num_seq": 8}, "unknown option 'max_num_seq', simulate(), did you mean max_num_seqs?"),
    ({"request_routing_policy": "FIFO"}, "use one of RR, RAND, LOAD, CUSTOM"),
    ({"max_num_seqs": "8"}, "option max_num_seqs got '8'"),
    ({"gen": 1}, "pass True or False"),
    ({"max_num_seqs": 0}, "--max-num-seqs must be > 0"),
])
def test_bad_options_raise_one_line_input_errors(options, message):
    with pytest.raises(InputError) as err:
        simulate(SINGLE, dataset=EXAMPLE, **options)
    assert message in err.value.line()


def test_bad_requests_and_configs_raise_input_errors():
    with pytest.raises(InputError, match="exactly one of dataset and requests"):
        simulate(SINGLE)
    with pytest.raises(InputError, match=r"missing field 'output_toks', requests\[1\]"):
        simulate(SINGLE, requests=[{"input_toks": 1, "output_toks": 1, "arrival_time_ns": 0},
                                   {"input_toks": 1, "arrival_time_ns": 0}])
    with pytest.raises(InputError, match="missing required key, key 'link_bw' in cluster_config"):
        simulate({"num_nodes": 1}, dataset=EXAMPLE)


def test_to_pandas_has_one_row_per_record():
    pandas = pytest.importorskip("pandas")
    results = simulate(SINGLE, dataset=EXAMPLE, num_req=5)
    frame = results.to_pandas()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame["request_id"]) == [r.request_id for r in results.requests]
    assert frame["latency"].sum() == sum(r.latency for r in results.requests)


def test_to_pandas_without_pandas_is_an_input_error(monkeypatch):
    results = simulate(SINGLE, dataset=EXAMPLE, num_req=2)
    monkeypatch.setitem(__import__("sys").modules, "pandas", None)
    with pytest.raises(InputError, match="pandas is not installed"):
        results.to_pandas()
