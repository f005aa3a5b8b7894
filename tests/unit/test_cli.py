import os

from harness import cli


def test_bad_experiment_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\ndescription: d\ncases:\n  - close_first: sever\n")
    assert cli.main(["run", str(bad)]) == cli.Exit.BAD_INPUT
    err = capsys.readouterr().err
    assert err == f"harness: {bad}: cases[0].close_first: got 'sever'; allowed: server, client\n"


def test_missing_experiment_file(capsys):
    assert cli.main(["run", "no/such.yaml"]) == cli.Exit.BAD_INPUT
    assert capsys.readouterr().err == "harness: no/such.yaml: no such file\n"


def test_dry_run_lists_trials_and_an_estimate(capsys):
    assert cli.main(["run", "experiments/lost_ack.yaml", "--dry-run", "--jobs", "4"]) == cli.Exit.OK
    out = capsys.readouterr().out
    assert "t006" in out and "ACK loss all" in out
    assert "10 trials in 10 labs, 4 labs at a time: about" in out


def test_report_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == cli.Exit.BAD_INPUT
    assert "not a run directory" in capsys.readouterr().err


def test_default_jobs_is_bounded():
    assert cli.default_jobs(3) == 3
    assert cli.default_jobs(1000) == min(10 * (os.cpu_count() or 1), cli.MAX_JOBS)


def test_close_phase_takes_period_and_phase(capsys):
    assert cli.close_phase("20.48,3.5") == (20.48, 3.5)
    for bad in ("3.5", "1,2,3", "x,1", "0,0", "2,2", "2,-1"):
        assert cli.main(["run", "experiments/restart.yaml", "--dry-run", "--close-phase", bad]) == cli.Exit.BAD_INPUT
        err = capsys.readouterr().err
        assert err.startswith("harness: argument --close-phase: ") and len(err.splitlines()) == 1
