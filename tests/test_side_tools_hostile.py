"""Hostile input to the side tools (compare, bench, soak, power, sweep, `python -m astra_sim`):
each bad input is exactly one `error:` line and exit status 2, never a traceback or a value
silently accepted."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from astra_sim import SystemConfig
from astra_sim.chakra_et import CASYS_NUMBERING, read_et
from astra_sim.engine import EngineConfig
from astra_sim.export import export
from evaluation import compare, sweep
from evaluation.bench import existing_side, read_example, real_side
from llm_profile import power
from llmsim_core.errors import InputError
from tests.conftest import REPO
from tests.test_astra_cli import CONFIG, DIMS, MEMORY, astra, graphs, write_case


def one_error(status: int, stderr: str, fragment: str) -> str:
    """Assert exit 2 and one `error:` line holding `fragment`; return that line."""
    lines = stderr.strip().splitlines()
    assert status == 2, stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    return lines[0]


# --- evaluation.compare: the console-log parser ----------------------------------------------

LOG = """\
[1.0s] Avg prompt throughput: 178.0 tokens/s, Avg generation throughput: 22.0 tokens/s
       ├─Running Instance[0]: 1 reqs, Total # 1 NPUs, Each NPU Memory Usage 100.00 MB (1.000 % Used)
       ├─Node[0]: Total CPU Memory Usage 10.00 MB, 1.000 % Used , Prefix Cache Hit ratio 5.00 %
       └─Avg power consumption: 300.5 W
▶ Simulation results...

Total simulation time: 0h 0m 1.234s
Total generated tokens:                                             10
Average generation throughput (tok/s):                              22.00
Throughput per 1.0 sec: [(178.0, 22.0), (0.0, 1e-05)]
Total energy consumption (kJ):                                      1.00
├─ NPU energy consumption (J):                                      10.00
Power per 1.0 sec (W): [100.0, 300.5]
                                  Instance [0]
Mean TTFT (ms):                                                     48.60
"""


def run_compare(tmp_path: Path, log_a: str, log_b: str = LOG, capsys=None) -> tuple[int, str]:
    (tmp_path / "a.txt").write_text(log_a)
    (tmp_path / "b.txt").write_text(log_b)
    status = compare.main([str(tmp_path / "a"), str(tmp_path / "b")])
    return status, capsys.readouterr().err


def test_the_hostile_cases_start_from_a_log_that_parses(tmp_path, capsys):
    assert run_compare(tmp_path, LOG, capsys=capsys) == (0, "")


LOG_EDITS = [
    ("178.0 tokens/s,", "1.2.178.0 tokens/s,"),
    ("178.0 tokens/s,", "...178.0 tokens/s,"),
    ("[1.0s]", "[1_0s]"),
    ("[(178.0, 22.0), (0.0, 1e-05)]", "[(1, oops)]"),
    ("[(178.0, 22.0), (0.0, 1e-05)]", "[1, 2]"),
    ("[(178.0, 22.0), (0.0, 1e-05)]", "[(1, 2, 3)]"),
    ("[(178.0, 22.0), (0.0, 1e-05)]", "[(nan, 1)]"),
    ("[(178.0, 22.0), (0.0, 1e-05)]", "[" * 5000 + "]" * 5000),
    ("[100.0, 300.5]", "[a]"),
    ("[100.0, 300.5]", "'abc'"),
    ("[100.0, 300.5]", "[1e999]"),
    ("1.00\n├─", "lots\n├─"),
    ("48.60", "n/a"),
    ("48.60", "nan"),
    ("48.60", "-1"),
    ("10.00\nPower", "1..2\nPower"),
    ("1.234s", "1.2.3s"),
    ("Usage 100.00 MB", "Usage 1.2.3 MB"),
    ("Usage 10.00 MB", "Usage 1.2.3 MB"),
    ("ratio 5.00 %", "ratio 1.2.3 %"),
    ("300.5 W", "1.2.3 W"),
    ("Instance[0]: 1 reqs", "Instance[" + "9" * 5000 + "]: 1 reqs"),
    ("Instance [0]", "Instance [" + "9" * 5000 + "]"),
    ("tokens:                                             10", "tokens: 1e3"),
    ("(tok/s):                              22.00", "(tok/s): fast"),
]


@pytest.mark.parametrize(("old", "new"), LOG_EDITS, ids=[new[:24] for _, new in LOG_EDITS])
def test_a_malformed_log_value_is_one_error_line(tmp_path, capsys, old, new):
    assert old in LOG
    bad = LOG.replace(old, new, 1)
    lineno = next(n for n, line in enumerate(bad.splitlines(), start=1)
                  if new.splitlines()[0] in line)
    line = one_error(*run_compare(tmp_path, bad, capsys=capsys),
                     f"line {lineno} of the log has an unreadable value")
    assert str(tmp_path / "a.txt") in line


def test_a_request_id_of_thousands_of_digits_is_one_error_line(tmp_path, capsys):
    (tmp_path / "a.csv").write_text(f"instance id,request id\n0,{'1' * 5000}\n")
    (tmp_path / "b.csv").write_text("instance id,request id\n0,1\n")
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    one_error(2, capsys.readouterr().err, "line 2 has request id '1111")
    (tmp_path / "a.csv").write_text(f"instance id,request id\n0,{'1' * 19}\n")
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    one_error(2, capsys.readouterr().err, "not a whole number of at most 18 digits")


# --- evaluation.bench -------------------------------------------------------------------------

SIM_HEADER = "arrival,end_time,latency,TTFT,TPOT\n"


@pytest.mark.parametrize(("csv_text", "log_text", "message"), [
    (SIM_HEADER + f"0,9,9,{'2' * 400},1\n", "", "line 2 has a time beyond 1e+18 ns"),
    (SIM_HEADER + "0,9,9,1_000,1\n", "", "line 2 lacks an integer TTFT"),
    (SIM_HEADER + "0,9,9,\u0662,1\n", "", "line 2 lacks an integer TTFT"),
    ("arrival,end_time,latency,TTFT,TPOT,TTFT\n0,9,9,2,1,3\n", "",
     "the header names column 'TTFT' twice"),
    (SIM_HEADER + "0,9,9,2,1\n",
     "[1.0s] Avg prompt throughput: 1.0 tokens/s, Avg generation throughput: "
     f"{'9' * 5000} tokens/s\n", "a status line has a rate of 9999"),
    (SIM_HEADER + "0,9,9,2,1\n",
     "[1.0s] Avg prompt throughput: 1.0 tokens/s, Avg generation throughput: 7.5 tokens/s\n"
     f"  ├─Running Instance[0]: {'9' * 5000} reqs, Waiting: 1 reqs\n",
     "a status block counts 9999"),
], ids=["huge TTFT", "underscore", "non-ASCII digit", "repeated column", "huge rate",
        "huge running count"])
def test_bench_sim_outputs_with_impossible_numbers_are_refused(tmp_path, csv_text, log_text,
                                                               message):
    (tmp_path / "sim.csv").write_text(csv_text)
    (tmp_path / "sim.log").write_text(log_text)
    with pytest.raises(InputError, match=re.escape(message)):
        existing_side(tmp_path)


def test_bench_log_header_limit_of_thousands_of_digits_is_refused(tmp_path):
    (tmp_path / "outputs").mkdir()
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "outputs/sim.log").write_text(f"  • Dataset : w.jsonl\n  • Max num seqs : "
                                              f"{'9' * 5000}\n")
    with pytest.raises(InputError, match="'Max num seqs' in the log header has 5000 digits"):
        read_example(tmp_path, tmp_path)


@pytest.mark.parametrize("value", ["1_000", "1e308", "inf", "-1", "\u0665"])
def test_bench_time_series_values_are_plain_numbers_in_range(tmp_path, value):
    (tmp_path / "requests.jsonl").write_text('{"queued_ts": 1.0, "first_token_ts": 1.5, '
                                             '"last_token_ts": 2.0, "output_toks": 2}\n')
    (tmp_path / "timeseries.csv").write_text(f"gen_throughput,running,waiting\n{value},1,0\n")
    with pytest.raises(InputError, match="unreadable time series"):
        real_side(tmp_path, 1)


# --- evaluation.soak --------------------------------------------------------------------------

@pytest.mark.parametrize("sizes", ["abc", "", "10,,20", "0", "-5", "99999999999999999999",
                                   "1_000", "1" * 5000], ids=lambda v: v[:24])
def test_soak_sizes_are_request_counts(sizes):
    done = subprocess.run([sys.executable, "-m", "evaluation.soak", "--sizes", sizes], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    one_error(done.returncode, done.stderr,
              "--sizes must be comma-separated request counts in 1..10^7")
    assert done.stdout == ""


# --- llm_profile.power ------------------------------------------------------------------------

@pytest.mark.parametrize(("rows", "message"), [
    (["0.0,200,before", "0.5,200,before", "1.0,10,during", "1.5,10,during", "2.0,300,after"],
     "is below the idle power before it (200.0 W)"),
    (["0.0,60,before", "0.5,6_0,before", "1.0,300,during"], "with plain decimal numbers"),
    (["0.0,60,before", "0_5,60,before", "1.0,300,during"], "with plain decimal numbers"),
    (["0.0,60,before", "0.5,\u0666\u0660,before", "1.0,300,during"],
     "with plain decimal numbers"),
])
def test_contradictory_power_samples_are_refused(tmp_path, capsys, rows, message):
    path = tmp_path / "s.csv"
    path.write_text("time_s,power_w,phase\n" + "\n".join(rows) + "\n")
    status = power.main(["--hardware", "A6000", "--samples", str(path)])
    one_error(status, capsys.readouterr().err, message)


# --- evaluation.sweep -------------------------------------------------------------------------

SPEC = ("seed: 1\nslo: {ttft_ms: 1000}\nworkload: {num_requests: 4}\nrates: [1]\nclusters:\n"
        "  - {model: meta-llama/Llama-3.1-8B, hardware: A6000}\n")


def run_sweep(argv: list[str]) -> int:
    """evaluation.sweep's exit status (argparse ends a bad command line with SystemExit)."""
    try:
        return sweep.main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize(("old", "new", "message"), [
    ("seed: 1", "seed: 1:30", "number '1:30' is not plain decimal (YAML 1.1 reads it as 90)"),
    ("seed: 1", "seed: 017", "number '017' is not plain decimal (YAML 1.1 reads it as 15)"),
    ("seed: 1", "seed: 0x1f", "number '0x1f' is not plain decimal"),
    ("seed: 1", "seed: 1_000", "number '1_000' is not plain decimal"),
    ("rates: [1]", "rates: [1:30.5]", "number '1:30.5' is not plain decimal"),
    ("rates: [1]", "rates: 1", "'rates' must be a list of rates, got 1"),
])
def test_sweep_spec_numbers_are_plain_and_rates_a_list(tmp_path, capsys, old, new, message):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.replace(old, new, 1))
    out = tmp_path / "rows.csv"
    status = run_sweep([str(spec), "--out", str(out), "--no-plot", "--jobs", "1"])
    assert str(spec) in one_error(status, capsys.readouterr().err, message)
    assert not out.exists()


@pytest.mark.parametrize("flags", [["--out", "{tmp}/newdir/", "--no-plot"],
                                   ["--out", "{tmp}/r.csv", "--plot", "{tmp}/newdir/"]])
def test_sweep_output_with_a_trailing_slash_is_refused(tmp_path, capsys, flags):
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    status = run_sweep([str(spec), *(f.format(tmp=tmp_path) for f in flags), "--jobs", "1"])
    one_error(status, capsys.readouterr().err, "ends in a separator, which names a folder")
    assert not (tmp_path / "newdir").exists() and not (tmp_path / "r.csv").exists()


# --- python -m astra_sim ----------------------------------------------------------------------

def test_a_chakra_string_field_that_is_not_utf8_is_one_error_line(tmp_path):
    args = write_case(tmp_path)
    et = tmp_path / "llm.0.et"
    name = read_et(et, CASYS_NUMBERING)[1][0].name.encode()
    data = et.read_bytes()
    at = data.index(name)
    et.write_bytes(data[:at] + b"\xff" + data[at + 1:])
    done = astra(*args)
    one_error(done.returncode, done.stderr, "bad Chakra trace (a string field is not UTF-8)")


@pytest.mark.parametrize(("name", "edit", "message"), [
    ("system.json", lambda raw: raw | {"bost": 1},
     "unknown key 'bost' in the system file, {path}, did you mean 'boost-mode'?"),
    ("system.json", lambda raw: raw | {"peak-perf": "fast"}, "peak-perf must be a number"),
    ("memory.json", lambda raw: {"remote_mem": raw["remote_mem"] | {"memory-type": "QUANTUM"}},
     "unknown memory-type 'QUANTUM' in remote_mem"),
    ("memory.json", lambda raw: {"remote_mem": raw["remote_mem"] | {"mem-bandwidth": 1}},
     "unknown key 'mem-bandwidth' in the memory file's remote_mem"),
    ("memory.json", lambda raw: raw | {"remote": {}}, "unknown key 'remote' in the memory file"),
    ("memory.json", lambda raw: {"memory-type": "MEMORY_POOL", "remote-mem-latency": 1,
                                 "remote-mem-bw": 1, "num-npu-per-node": 2},
     "did you mean 'num-npus-per-node'?"),
])
def test_unknown_keys_and_values_of_the_astra_inputs_are_refused(tmp_path, name, edit,
                                                                  message):
    args = write_case(tmp_path)
    path = tmp_path / name
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    done = astra(*args)
    one_error(done.returncode, done.stderr, message.format(path=path))


@pytest.mark.parametrize("dialect", ["upstream", "casys"])
def test_every_exported_input_set_still_replays(tmp_path, dialect):
    """The files export writes (roofline keys and either memory layout) pass the key checks."""
    from astra_sim.memory import MemorySystem

    config = EngineConfig(dims=DIMS, system=SystemConfig(local_mem_bw=1600), roofline=True,
                          peak_tflops=100.0)
    prefix = export(tmp_path, graphs(), config, MemorySystem.from_json_dict(MEMORY, 4),
                    dialect=dialect)
    assert CONFIG.dims == config.dims
    done = astra("--workload", str(prefix), "--network", str(tmp_path / "network.yml"),
                 "--system", str(tmp_path / "system.json"), "--memory",
                 str(tmp_path / "memory.json"), "--dialect", dialect)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 4
