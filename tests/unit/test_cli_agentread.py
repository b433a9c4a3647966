"""The CLI's reads through an agent (cli/agentread.py) and `service deploy`'s env loading."""

from __future__ import annotations

from typing import Any

import click
import pytest

from nimbus.cli import agentread
from nimbus.cli.service import load_env
from nimbus.errors import Conflict


class FakeClient:
    """Answers a log read from a script of GET answers; records every call."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.answers, self.calls = answers, []

    def request(self, method: str, path: str, body: Any = None) -> Any:
        self.calls.append((method, path))
        if method == "POST":
            return {"id": "fetch-1"}
        if method == "DELETE":
            return {}
        return self.answers.pop(0)


def page(lines: list[Any], cursor: int, done: bool, **extra: Any) -> dict[str, Any]:
    return {"lines": lines, "cursor": cursor, "done": done, "error": "", **extra}


def test_a_read_polls_with_the_cursor_until_done_and_closes(monkeypatch, capsys):
    monkeypatch.setattr(agentread, "POLL_SEC", 0)
    line = {"time": "t", "service": "app", "replica": 2, "node": "n1", "stream": "stdout",
            "text": "hello"}
    client = FakeClient([page([], 0, False), page([line], 1, False),
                         page([{**line, "stream": "stderr", "text": "oops"}], 2, True)])
    printed = agentread.read(client, "/v1/services/web/logs", {}, False,
                             agentread.stack_line(False, "table"))
    out = capsys.readouterr()
    assert printed == 2
    assert out.out == "app.2@n1 | hello\n" and out.err == "app.2@n1 | oops\n"
    gets = [p for m, p in client.calls if m == "GET"]
    assert gets[-1].endswith("?cursor=1")
    assert client.calls[-1] == ("DELETE", "/v1/services/web/logs/fetch-1")


def test_a_failed_read_is_one_error(monkeypatch):
    client = FakeClient([{**page([], 0, True), "error": "stack.logs failed: boom"}])
    with pytest.raises(Conflict, match="boom"):
        agentread.read(client, "/v1/nodes/n1/logs", {}, False, agentread.plain_line("table"),
                       closable=False)
    assert ("DELETE", "/v1/nodes/n1/logs/fetch-1") not in client.calls


def test_fresh_asks_again_while_a_refresh_is_on_its_way(monkeypatch, capsys):
    monkeypatch.setattr(agentread, "POLL_SEC", 0)

    class Client:
        answers = [{"refreshing": True, "age": 9.0}, {"refreshing": False, "n": 1}]

        def request(self, method: str, path: str) -> Any:
            return self.answers.pop(0)

    assert agentread.fresh(Client(), "/v1/services/web") == {"refreshing": False, "n": 1}
    assert capsys.readouterr().err == ""


def test_env_from_a_file_and_flags(tmp_path):
    env_file = tmp_path / "app.env"
    env_file.write_text("# secrets\nPW='p w'\nA=file\n")
    assert load_env(("A=flag", "B=x=y"), str(env_file)) == {"PW": "p w", "A": "flag",
                                                            "B": "x=y"}
    with pytest.raises(click.BadParameter) as err:
        load_env(("hunter2",), None)
    assert "hunter2" not in str(err.value)
