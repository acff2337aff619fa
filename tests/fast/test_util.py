"""The shared machinery, without a host (fast tier): what a diff may show; the facts, from
their command and a canned output to the parsed state; what put_checked sends and what its
script does to a file; when activate starts, reloads or leaves a unit.

pyinfra runs here as in a run's prepare phase, against its @fake connector: facts are
answered from canned output (an empty answer unless told otherwise) and the commands are
recorded; each operation's command generator gives what would be sent. pyinfra tests its
own operations and facts this way: facts in, commands out.
"""

import grp
import os
import pwd
import re
import secrets
import shlex
import subprocess
from contextlib import contextmanager

import pytest
from pyinfra.api import Config, FileUploadCommand, Inventory, State
from pyinfra.api.operation import OperationMeta
from pyinfra.connectors.fake import FakeConnector
from pyinfra.connectors.util import CommandOutput
from pyinfra.context import ctx_config, ctx_host, ctx_inventory, ctx_state

from tasks.util import ConfigFile, HostState, System, activate, masked, put_checked


def test_diffs_mask_hashes_tsig_secrets_and_key_material():
    assert masked("alice@example.org:{SHA512-CRYPT}$6$salt$abcdef/.") == "alice@example.org:{SHA512-CRYPT}********"
    assert masked('    secret "c2VjcmV0c2VjcmV0c2VjcmV0";') == '    secret "********";'
    assert masked('\tsecret: "c2VjcmV0c2VjcmV0c2VjcmV0"') == '\tsecret: "********"'
    assert masked("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7") == "********"
    assert masked(secrets.token_urlsafe(32)) == "********"  # the backup's passphrase file
    # What is not secret stays readable.
    assert masked("maxretry = 5") == "maxretry = 5"
    assert masked("smtpd_banner = $myhostname ESMTP") == "smtpd_banner = $myhostname ESMTP"


def test_private_files_are_those_others_cannot_read():
    assert ConfigFile("/x", "", mode="640").private and ConfigFile("/x", "", mode="600").private
    assert not ConfigFile("/x", "", mode="644").private and not ConfigFile("/x", "", mode="755").private


@contextmanager
def fake_host(temp_dir: str = "/tmp", **responses):
    """A pyinfra state with one host on the @fake connector, as the current host: facts
    are answered from `responses` (command substring -> output lines), nothing waits."""
    inventory = Inventory((["mx.example.org"], {}))
    for h in inventory:
        h.connector_cls = FakeConnector
    state = State(inventory, Config(TEMP_DIR=temp_dir))
    host = inventory.get_host("mx.example.org")
    host.connector.data.update(fake_delay=0, fake_delay_jitter=0, fake_responses=responses)
    with ctx_state.use(state), ctx_inventory.use(inventory), ctx_config.use(state.config), ctx_host.use(host):
        yield host


def operations(host) -> list[tuple[str, list, dict]]:
    """(name, commands, global arguments) of each operation the host got, in order."""
    state = host.state
    out = []
    for op_hash in host.op_hash_order:
        data = state.get_op_data_for_host(host, op_hash)
        (name,) = state.get_op_meta(op_hash).names
        out.append((name, list(data.command_generator()), data.global_arguments))
    return out


def words_after(command: str, marker: str) -> list[str]:
    """The shell words of a `for x in WORDS; do` list, as the shell splits them."""
    return shlex.split(re.search(rf"{re.escape(marker)} (.*?); do ", command)[1])


# Paths and names as the shell must see them: one word each, never expanded.
ODD_PATHS = ["/etc/plain", "/etc/with space/file", "/etc/it's", "/tmp/$(reboot)"]


def test_system_command_quotes_every_head_and_name():
    command = System().command(heads=ODD_PATHS, names=["example.org", "a b.example"])
    assert words_after(command, "for f in") == ODD_PATHS
    assert words_after(command, "for n in") == ["example.org", "a b.example"]


# dig's answer to three questions at once (+noall +comments +question), as bind 9.20
# prints it: the first validated, the second not, the third never answered.
DIG = """;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1
;; flags: qr rd ra ad; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags: do; udp: 1232
;; QUESTION SECTION:
;example.org.			IN	SOA

;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 2
;; flags: qr rd ra; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags: do; udp: 1232
;; QUESTION SECTION:
;example.net.			IN	SOA

;; communications error to 127.0.0.1#53: timed out
"""


def test_one_dig_judges_every_name(tmp_path):
    """The validation part of System's command, run here with a dig and a systemctl of our
    own: only a name whose answer has `ad` is validated."""
    (tmp_path / "dig").write_text(f"#!/bin/sh\ncat <<'EOF'\n{DIG}EOF\n")
    (tmp_path / "systemctl").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("dig", "systemctl"):
        (tmp_path / tool).chmod(0o755)
    script = System.validation(["example.org", "example.net", "example.com"])
    r = subprocess.run(["sh", "-c", script + "true"], capture_output=True, text=True,
                       env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert r.stdout.splitlines() == ["unvalidated example.net", "unvalidated example.com"], r.stderr


def test_system_fact_reads_bind_key_states_with_a_real_shell(tmp_path):
    """bind's key state files (the lines it writes, 9.18 and 9.20 alike), read by the
    command itself: one line per key with when it was made and is to leave the zone, its goal
    and the states of its DS, DNSKEY and zone signatures."""
    (tmp_path / "Kexample.org.+013+12345.state").write_text(
        "; This is the state of key 12345, for example.org.\nAlgorithm: 13\nKSK: yes\nZSK: yes\n"
        "Generated: 20261203151244 (Thu Dec  3 16:12:44 2026)\nRemoved: 20261216064138 (Wed Dec 16 06:41:38 2026)\n"
        "KRRSIGState: hidden\nGoalState: hidden\nDNSKEYState: omnipresent\nZRRSIGState: unretentive\n"
        "DSState: unretentive\n")
    (tmp_path / "Kexample.org.+013+12345.key").write_text("; not a state file\n")
    command = System().command(heads=[], key_dir=str(tmp_path))
    r = subprocess.run(["sh", "-c", command.split("systemd-detect-virt --container || true; ", 1)[1]],
                       capture_output=True, text=True)
    assert r.stdout.splitlines() == [
        "dnssec Kexample.org.+013+12345.state Generated:20261203151244 Removed:20261216064138 GoalState:hidden "
        "DNSKEYState:omnipresent ZRRSIGState:unretentive DSState:unretentive"], r.stderr


def test_host_state_command_quotes_every_path_unit_and_user():
    command = HostState().command(paths=ODD_PATHS, units=["ssh", "apt-daily.timer"], users=["alice", "vmail"])
    assert words_after(command, "for f in") == ODD_PATHS
    assert words_after(command, "for u in") == ["ssh", "apt-daily.timer"]
    assert command.rstrip().endswith("for u in alice vmail; do getent passwd $u | cut -d: -f1; done")


@pytest.mark.parametrize(("output", "expected"), [
    # A fresh Debian 13 VM: none of the heads exist yet, the resolver is not running.
    (["13", "none", "keys none"], {"debian": 13, "container": "none", "keys": "none", "heads": {},
                                   "unvalidated": [], "dnssec": []}),
    # Debian 12 in a container: the first three lines of each head ("|"-joined by the
    # command), an empty file, and the names the local resolver did not validate.
    (["12", "systemd-nspawn", "keys " + "e" * 64, "/etc/inhouse/tls/tlsa 3 1 1 ab|", "/etc/inhouse/tls/issuer acme|",
      "/var/lib/bind/db.example.org ; serial 2026010100|; content 0123|$TTL 3600|", "/etc/inhouse/dkim/current ",
      "unvalidated example.org", "unvalidated example.net",
      "dnssec Kexample.org.+013+12345.state Generated:20261203151244 GoalState:omnipresent DSState:rumoured"],
     {"debian": 12, "container": "systemd-nspawn", "keys": "e" * 64,
      "heads": {"/etc/inhouse/tls/tlsa": "3 1 1 ab\n", "/etc/inhouse/tls/issuer": "acme\n",
                "/var/lib/bind/db.example.org": "; serial 2026010100\n; content 0123\n$TTL 3600\n",
                "/etc/inhouse/dkim/current": ""},
      "unvalidated": ["example.org", "example.net"],
      "dnssec": ["Kexample.org.+013+12345.state Generated:20261203151244 GoalState:omnipresent DSState:rumoured"]}),
])
def test_system_fact_parses_version_container_heads_and_unvalidated_names(output, expected):
    assert System().process(output) == expected


def test_host_state_fact_parses_packages_paths_units_and_users():
    output = [
        "# packages", "openssh-server", "sudo",
        "# paths",
        "/etc/ssh/sshd_config.d/00-inhouse.conf " + "ab" * 32 + " 600:root:root",  # a file: digest, mode, owner
        "/etc/localtime link /usr/share/zoneinfo/UTC",  # a symlink: its target
        "/home/alice/.ssh/authorized_keys no-parent",  # its folder is missing
        "# units",
        "ssh enabled active", "fail2ban disabled inactive",
        "chrony  ",  # not installed: systemctl says nothing
        "# users", "alice",
    ]
    assert HostState().process(output) == {
        "packages": {"openssh-server", "sudo"},
        "paths": {"/etc/ssh/sshd_config.d/00-inhouse.conf": "ab" * 32 + " 600:root:root",
                  "/etc/localtime": "link /usr/share/zoneinfo/UTC",
                  "/home/alice/.ssh/authorized_keys": "no-parent"},
        "units": {"ssh": ("enabled", "active"), "fail2ban": ("disabled", "inactive"), "chrony": ("", "")},
        "users": {"alice"},
    }


def test_facts_go_through_pyinfra_in_one_command_each():
    """The facts as a run reads them: one remote command each, parsed by process()."""
    answers = {"/etc/os-release": ["13", "none", "unvalidated example.org"],
               "dpkg-query": ["# packages", "sudo", "# paths", "/etc/x no-parent", "# units", "# users"]}
    with fake_host(**answers) as host:
        system = host.get_fact(System, heads=["/etc/inhouse/tls/tlsa"], names=["example.org"])
        state = host.get_fact(HostState, paths=["/etc/x"], units=[], users=["alice"])
        sent = [c for c in host.connector.executed_commands if "os-release" in c or "dpkg-query" in c]
    assert system == {"debian": 13, "container": "none", "keys": "", "heads": {}, "unvalidated": ["example.org"],
                      "dnssec": []}
    assert state == {"packages": {"sudo"}, "paths": {"/etc/x": "no-parent"}, "units": {}, "users": set()}
    assert len(sent) == 2


# put_checked: what it sends, for each kind of file.
ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


def put_commands(config: ConfigFile, parent_missing: bool, temp_dir: str = "/tmp") -> tuple[list, str]:
    """The commands put_checked yields for `config`, and the upload's temporary file."""
    with fake_host(temp_dir) as host:
        commands = list(put_checked._inner(config, parent_missing))
        return commands, host.get_temp_filename(config.path)


def script(command) -> str:
    """The script of a `sh -c SCRIPT` command."""
    words = shlex.split(str(command))
    assert words[:2] == ["sh", "-c"] and len(words) == 3, command
    return words[2]


@pytest.mark.parametrize(("check", "mode", "parent_missing"), [
    (None, "644", False),  # public, no checker: upload, then chown, chmod and mv
    ("visudo -cqf {path}", "440", False),
    ("sshd -t", "600", False),  # private with a checker
    (None, "640", True),  # private, its folder still missing
    ("chronyd -p", "644", True),
])
def test_put_checked_uploads_to_new_and_installs_in_one_command(check, mode, parent_missing):
    path = "/etc/with space/it's.conf"  # quoted everywhere: one word, whatever it holds
    c = ConfigFile(path, "x = 1\n", check=check, mode=mode, dir_mode="750")
    commands, temp = put_commands(c, parent_missing)
    p, n, b = shlex.quote(path), shlex.quote(f"{path}.new"), shlex.quote(f"{path}.bak")
    uploads = [i for i, x in enumerate(commands) if isinstance(x, FileUploadCommand)]
    assert len(uploads) == 1
    upload = commands[uploads[0]]
    # The upload goes to PATH.new through a temporary file of put_checked's choice.
    assert (upload.dest, upload.remote_temp_filename, upload.src.getvalue()) == (f"{path}.new", temp, "x = 1\n")
    before, after = commands[:uploads[0]], commands[uploads[0] + 1:]
    # Before the upload: one command, only when there is something to prepare.
    assert len(before) == (1 if c.private or parent_missing else 0)
    prepare = script(before[0]) if before else ""
    assert (f"install -d -m 750 -o root -g root {shlex.quote('/etc/with space')}" in prepare) == parent_missing
    if c.private:
        # PATH.new and the temporary file exist with their final mode before any byte lands.
        assert f'install -m 600 -o "${{SUDO_USER:-root}}" /dev/null {temp}' in prepare
        assert f"install -m {mode} -o root -g root /dev/null {n}" in prepare
    # After it: one command that gives PATH.new its owner and mode and puts it in place.
    (install,) = after
    install = script(install)
    # A private file: its temporary copy goes first.
    assert install.startswith((f"rm -f {temp}; " if c.private else "") + f"chown root:root {n} && chmod {mode} {n} && ")
    if check is None:
        assert install.endswith(f"mv -f {n} {p}") and ".bak" not in install
        return
    checker = check.format(path=p)
    # The old file is kept as PATH.bak, then the new one goes live, then the checker runs;
    # if it fails, the old file comes back (or the new one goes), and the command fails.
    order = [f"cp -p {p} {b}", f"mv -f {n} {p}", f"if ! out=$({checker} 2>&1)", f"mv -f {b} {p}", "exit 1"]
    assert [install.index(x) for x in order] == sorted(install.index(x) for x in order)
    assert install.endswith(f"exit 1; fi; rm -f {b}")  # kept only while the checker runs
    assert f"inhouse: {check.split()[0]} rejected the new {path}; the old one stays live" in install


def run_put_checked(config: ConfigFile, parent_missing: bool, tmp) -> tuple[subprocess.CompletedProcess, dict]:
    """Run put_checked's commands here, as the SSH connector does with sudo: the upload is
    written to the temporary file, copied onto PATH.new (cp keeps an existing file's mode)
    and the temporary file removed. Returns the last result and the modes after the upload."""
    (tmp / "tmp").mkdir(exist_ok=True)
    commands, temp = put_commands(config, parent_missing, str(tmp / "tmp"))
    env = os.environ | {"SUDO_USER": ME}
    modes: dict = {}
    for command in commands:
        if isinstance(command, FileUploadCommand):
            with open(temp, "w") as f:  # an SFTP upload truncates an existing file: its mode stays
                f.write(command.src.getvalue())
            modes = {"temp": oct(os.stat(temp).st_mode & 0o777)}
            subprocess.run(["cp", temp, command.dest], check=True)
            modes["new"] = oct(os.stat(command.dest).st_mode & 0o777)
            os.unlink(temp)
            continue
        result = subprocess.run(str(command), shell=True, env=env, capture_output=True, text=True)
        if result.returncode:
            break
    return result, modes


def local(path, content="good\n", **kw) -> ConfigFile:
    """A file this user may own: the scripts run here, without root."""
    return ConfigFile(str(path), content, user=ME, group=MY_GROUP, **kw)


GREP = "grep -q good {path}"  # a checker that accepts only files that say "good"


def test_a_file_the_checker_accepts_goes_live_with_its_mode(tmp_path):
    target = tmp_path / "new dir" / "it's.conf"
    result, modes = run_put_checked(local(target, check=GREP, mode="640", dir_mode="700"), True, tmp_path)
    assert result.returncode == 0, result.stderr
    assert target.read_text() == "good\n" and oct(target.stat().st_mode & 0o777) == "0o640"
    assert oct(target.parent.stat().st_mode & 0o777) == "0o700"
    # Private from the first byte: the temporary file and PATH.new never had a wider mode.
    assert modes == {"temp": "0o600", "new": "0o640"}
    assert sorted(p.name for p in target.parent.iterdir()) == ["it's.conf"]  # no .new, no .bak
    assert not list((tmp_path / "tmp").iterdir())


def test_a_file_the_checker_rejects_leaves_the_old_one_live(tmp_path):
    target = tmp_path / "it's.conf"
    target.write_text("good, and old\n")
    target.chmod(0o644)
    result, _ = run_put_checked(local(target, "bad\n", check=GREP), False, tmp_path)
    assert result.returncode == 1
    assert f"inhouse: grep rejected the new {target}; the old one stays live" in result.stderr
    assert target.read_text() == "good, and old\n" and oct(target.stat().st_mode & 0o777) == "0o644"
    # No PATH.new left: the next run sees the difference and checks again.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "tmp") == ["it's.conf"]


def test_a_rejected_first_file_is_not_left_in_place(tmp_path):
    target = tmp_path / "first.conf"
    result, _ = run_put_checked(local(target, "bad\n", check=GREP, mode="600"), False, tmp_path)
    assert result.returncode == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]


def test_a_file_without_checker_replaces_the_old_one(tmp_path):
    target = tmp_path / "plain.conf"
    target.write_text("old\n")
    result, modes = run_put_checked(local(target, "new\n", mode="644"), False, tmp_path)
    assert result.returncode == 0, result.stderr
    assert target.read_text() == "new\n" and sorted(p.name for p in tmp_path.iterdir()) == ["plain.conf", "tmp"]


@pytest.mark.parametrize(("unit_state", "action", "inputs", "expected"), [
    # Not running or not enabled (or not installed yet): enable and start it, once its
    # config is in place; no restart on top.
    (("", ""), "reload", True, [("Enable and start ssh", ["systemctl enable --now ssh"])]),
    (("disabled", "active"), "restart", True, [("Enable and start ssh", ["systemctl enable --now ssh"])]),
    (("enabled", "failed"), "", False, [("Enable and start ssh", ["systemctl enable --now ssh"])]),
    # Running: its action, only if an input changes in this run (decided when it runs).
    (("enabled", "active"), "reload", True, [("Reload ssh: its config changed", ["systemctl reload ssh"])]),
    (("enabled", "active"), "reload-or-restart", True,
     [("Reload-or-restart ssh: its config changed", ["systemctl reload-or-restart ssh"])]),
    # Nothing to do: no input that could change, or a unit with no action (a timer).
    (("enabled", "active"), "restart", False, []),
    (("enabled", "active"), "", True, []),
])
def test_activate_starts_a_stopped_unit_and_acts_on_a_running_one_only_on_change(unit_state, action, inputs, expected):
    with fake_host() as host:
        changed = {"/etc/ssh/sshd_config.d/00-inhouse.conf": OperationMeta("input", is_change=True)}
        activate({"ssh": action}, changed if inputs else {}, {"units": {"ssh": unit_state}})
        ops = operations(host)
    assert [(name, [str(c) for c in commands]) for name, commands, _ in ops] == expected
    for name, _, arguments in ops:
        # Enabling is unconditional; the action waits for its inputs (_if).
        assert bool(arguments["_if"]) == (not name.startswith("Enable"))


@pytest.mark.parametrize(("results", "acts"), [
    ((False, False), False),  # every input was the same already: no reload
    ((False, True), True),  # one changed: one reload
    ((True, True), True),  # several changed: still one
])
def test_the_action_runs_if_any_input_did_change(results, acts):
    with fake_host() as host:
        inputs = {f"/etc/x{i}": OperationMeta(f"input{i}", is_change=True) for i in range(len(results))}
        activate({"ssh": "reload"}, inputs, {"units": {"ssh": ("enabled", "active")}})
        ((_, _, arguments),) = operations(host)
    for op, changed in zip(inputs.values(), results, strict=True):  # the inputs as the run ends them
        op.set_complete(True, ["command"] if changed else [], CommandOutput([]))
    condition = arguments["_if"]
    assert condition() is acts


def test_units_are_activated_in_their_order_each_in_a_stable_place():
    with fake_host() as host:
        units = {"unbound": "restart", "apt-daily.timer": "", "nsd": "restart"}
        activate(units, {}, {"units": {"apt-daily.timer": ("enabled", "active")}})
        names = [name for name, _, _ in operations(host)]
    assert names == ["Enable and start unbound", "Enable and start nsd"]
