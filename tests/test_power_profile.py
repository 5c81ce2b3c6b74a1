"""`python -m llm_profile.power`: the estimation on a recorded series, and no GPU here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llm_profile.power import Sample, estimate, main, read_samples, samples_csv
from tests.conftest import REPO


def figure_6_like_series(step: float = 0.1) -> list[Sample]:
    """5 s at idle (33 W ± 1), 10 s busy (300 W with short 150 W dips between batches), then
    18 s of standby at 89 W and idle again until 40 s."""
    out = []
    for k in range(400):
        t = k * step
        if t < 5:
            out.append(Sample(t, 33 + (1 if k % 2 else -1), "before"))
        elif t < 15:
            out.append(Sample(t, 150.0 if k % 10 == 0 else 300.0, "during"))
        elif t < 33:
            out.append(Sample(t, 89.0 + (0.5 if k % 3 else 0), "after"))
        else:
            out.append(Sample(t, 33.0, "after"))
    return out


def test_estimates_the_three_states_of_a_recorded_series():
    got = estimate(figure_6_like_series()).entry()
    assert got == {"idle_power": 33.0, "standby_power": 89.5, "active_power": 300.0,
                   "standby_duration": 18.0}


def test_a_gpu_that_drops_to_idle_at_once_has_no_standby():
    series = [s if s.phase != "after" else Sample(s.time_s, 33.0, "after")
              for s in figure_6_like_series()]
    got = estimate(series)
    assert (got.standby_power, got.standby_duration) == (got.idle_power, 0.0)


def test_sample_file_round_trip_and_cli_estimate(tmp_path, capsys):
    path = tmp_path / "s.csv"
    path.write_text(samples_csv(figure_6_like_series()))
    assert estimate(read_samples(path)) == estimate(figure_6_like_series())
    assert main(["--hardware", "A6000", "--samples", str(path)]) == 0
    entry = json.loads(capsys.readouterr().out)["npu"]["A6000"]
    assert entry["active_power"] == 300.0 and entry["standby_duration"] == 18.0


@pytest.mark.parametrize(("text", "message"), [
    ("time_s,power_w,phase\n0.0,-3,before\n",
     "error: sample at 0.0 s of -3 W in phase 'before' is out of range, line 2 of "),
    ("time_s,power_w,phase,extra\n0.0,3,before,1\n", "error: the header is "),
    ("time_s,power_w,phase\n0.0,3,before,1\n", "error: more fields than the header, line 2"),
    ("time_s,power_w,phase\n", "error: no samples taken before the command, {path}"),
    ("time_s,power_w,phase\n1.0,80,before\n0.5,300,during\n",
     "error: sample at 0.5 s in phase 'during' comes after one at 1 s in phase 'before', line 3"),
    ("time_s,power_w,phase\n0.0,80,during\n0.5,80,before\n",
     "error: sample at 0.5 s in phase 'before' comes after one at 0 s in phase 'during', line 3"),
    ("time_s,power_w,phase\n2.0,80,before\n2.0,300,during\n2.0,90,after\n",
     "error: every sample has the same time, {path}, "),
    ("time_s,power_w,phase\n0.0,0,before\n0.5,0,during\n1.0,0,after\n",
     "error: every sample reads 0 W (a GPU without a power sensor?), {path}, ")])
def test_bad_sample_file_is_one_error_line(tmp_path, capsys, text, message):
    path = tmp_path / "s.csv"
    path.write_text(text)
    assert main(["--hardware", "A6000", "--samples", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message.format(path=path)), err


def test_without_a_gpu_it_stops_with_one_error_line(tmp_path):
    out = tmp_path / "p.json"
    done = subprocess.run([sys.executable, "-m", "llm_profile.power", "--hardware", "A6000",
                           "--idle", "0.01", "--output", str(out), "--", "true"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "NVML" in lines[0] or "NVIDIA" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("phase", ["before", "during"])
def test_a_series_missing_a_phase_is_an_input_error(phase):
    from llmsim_core.errors import InputError
    with pytest.raises(InputError, match=f"no samples taken {phase}"):
        estimate([s for s in figure_6_like_series() if s.phase != phase])
