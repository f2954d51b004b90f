"""The command line operators use besides `serve`: `foxrouter check --config FILE`,
`foxrouter version`, and `FOXROUTER_<SECTION>__<KEY>` environment overrides (README,
router/src/config/mod.rs)."""

import asyncio
import json
import os
import subprocess

import pytest

from conftest import BIN
from wamp_client import JoinFailed, connect, run


def foxrouter(*args, env=None):
    environment = dict(os.environ, **(env or {}))
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=30,
                          env=environment)


def test_check_accepts_a_good_file_and_names_the_line_of_a_bad_one(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[limits]\nsession_queue_max = 10\n[[role]]\nname = "r"\npermissions = []\n')
    done = foxrouter("check", "--config", str(good))
    assert done.returncode == 0 and done.stdout.strip() == f"ok: {good}", done
    bad = tmp_path / "bad.toml"
    bad.write_text('[limits]\nsession_queue_max = 10\nsession_queue_mux = 3\n')
    done = foxrouter("check", "--config", str(bad))
    assert done.returncode == 1, done
    assert "session_queue_mux" in done.stderr and "line 3" in done.stderr, done.stderr
    invalid = tmp_path / "invalid.toml"
    invalid.write_text('[limits]\nsession_queue_max = 0\n')
    done = foxrouter("check", "--config", str(invalid))
    assert done.returncode == 1 and "at least 1" in done.stderr, done.stderr
    # The environment's overrides are checked too, and a bad one is named.
    done = foxrouter("check", "--config", str(good), env={"FOXROUTER_LIMITS__SESSION_QUEUE_MAXX": "5"})
    assert done.returncode == 1 and "FOXROUTER_LIMITS__SESSION_QUEUE_MAXX" in done.stderr, done.stderr
    done = foxrouter("check", "--config", str(good), env={"FOXROUTER_LIMITS__SESSION_QUEUE_MAX": "0"})
    assert done.returncode == 1 and "at least 1" in done.stderr, done.stderr
    done = foxrouter("check", "--config", str(tmp_path / "missing.toml"))
    assert done.returncode == 1 and "missing.toml" in done.stderr, done.stderr


def test_version_names_the_components_and_libraries():
    done = foxrouter("version")
    assert done.returncode == 0, done
    lines = done.stdout.splitlines()
    assert lines[0].startswith("foxrouter ")
    for name in ("fox-wamp-proto", "fox-mqtt-proto", "fox-storage", "librocksdb-sys", "tokio", "rustls"):
        line = next((l for l in lines if l.strip().startswith(name + " ")), None)
        assert line is not None and "unknown" not in line, (name, done.stdout)


def test_environment_overrides_reach_a_running_router(router_factory, monkeypatch):
    monkeypatch.setenv("FOXROUTER_ROUTER__AUTO_CREATE_REALMS", "false")
    monkeypatch.setenv("FOXROUTER_ROUTER__REALMS", '["from-env"]')
    router = router_factory('[router]\nrealms = ["from-file"]\n')

    async def main():
        with pytest.raises(JoinFailed) as refused:
            await connect(router, realm="from-file")
        assert refused.value.reason == "wamp.error.no_such_realm"
        s = await connect(router, realm="from-env")
        s.leave()

    run(main())


def test_ctl_status_sessions_and_kick(router_factory):
    router = router_factory('[admin]\ntoken = "ctl-secret-token"\n')

    async def main():
        session = await connect(router)
        loop = asyncio.get_running_loop()

        def ctl(*args, token="ctl-secret-token"):
            env = {"FOXROUTER_CTL_TOKEN": token} if token else {}
            return foxrouter("ctl", "--admin", router.admin_url, *args, env=env)

        refused = await loop.run_in_executor(None, lambda: ctl("status", token=None))
        assert refused.returncode == 1 and "401" in refused.stderr, refused
        status = await loop.run_in_executor(None, ctl, "status")
        assert status.returncode == 0, status
        assert json.loads(status.stdout)["counts"]["sessions"]["wamp"] == 1
        sessions = await loop.run_in_executor(None, ctl, "sessions")
        assert sessions.returncode == 0, sessions
        lines = sessions.stdout.splitlines()
        assert lines[0].startswith("ID") and lines[-1] == "1 sessions", sessions.stdout
        session_id = session.details.session
        assert lines[1].split()[0] == str(session_id)
        kicked = await loop.run_in_executor(None, ctl, "kick", str(session_id))
        assert kicked.returncode == 0 and "disconnecting" in kicked.stdout, kicked
        await asyncio.wait_for(session.left, 5)
        unknown = await loop.run_in_executor(None, ctl, "kick", "12345")
        assert unknown.returncode == 1 and "404" in unknown.stderr, unknown

    run(main())
    nowhere = foxrouter("ctl", "--admin", "http://127.0.0.1:1", "status")
    assert nowhere.returncode == 1 and "127.0.0.1:1" in nowhere.stderr, nowhere
