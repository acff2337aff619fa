"""Fast tier (no lab): mail data. Aliases and sender rights say what the data says, bad
mail data is named before anything connects, passwords are stored only as hashes, and the
MTA and IMAP configs fit each Debian release."""

import stat

import pytest
from passlib.hash import sha512_crypt

from tasks import dkim, dmarc, imap, mail, milter, mta_postfix, spam
from tasks.data import DEFAULTS, problems, read_group_data, with_roles
from tasks.password import store
from tasks.registry import by_name

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDk5GBqO9XcVtHc1M7Zm8dCk6h0pY8XzS3jDhHk9P1dx me@laptop"
GROUPS = {
    "mail": [("mx.example.org", {"ipv4": "203.0.113.10", "ipv6": "2001:db8::10"})],
    "relay": [("vps.example.org", {"ipv4": "198.51.100.20", "ipv6": "2001:db8::20"})],
}
SYSTEM13 = {"debian": 13, "container": "none", "heads": {}}


@pytest.fixture(scope="module")
def password_file(tmp_path_factory) -> str:
    """The users' hashes, made once: each takes a while, on purpose."""
    secrets = tmp_path_factory.mktemp("secrets")
    for user in ("alice@example.org", "bob@example.net"):
        store(secrets, user, "correct horse battery")
    return (secrets / mail.PASSWORDS).read_text()


@pytest.fixture
def data(tmp_path, password_file):
    (tmp_path / mail.PASSWORDS).write_text(password_file)

    def make(host="mx.example.org", **changes) -> dict:
        base = DEFAULTS | read_group_data("all") | {
            "domain": "example.org", "extra_domains": ["example.net"], "admin_user": "ops", "admin_ssh_keys": [KEY],
            "ipv4": "203.0.113.10", "ipv6": "2001:db8::10", "secrets_dir": str(tmp_path),
            "mail_users": ["alice@example.org", "bob@example.net"],
            "mail_aliases": {"info@example.org": ["alice@example.org"],
                             "team@example.net": ["alice@example.org", "bob@example.net", "carol@elsewhere.test"]},
        }
        return with_roles(host, base | changes, GROUPS)

    return make


def test_role_addresses_reach_the_admin_and_data_aliases_win(data):
    aliases = mail.aliases(data())
    for domain in ("example.org", "example.net"):
        for role in ("postmaster", "abuse", "hostmaster", "root"):
            assert aliases[f"{role}@{domain}"] == ["alice@example.org"]
    own = mail.aliases(data(mail_aliases={"abuse@example.net": ["bob@example.net"]}))
    assert own["abuse@example.net"] == ["bob@example.net"]


def test_users_may_send_as_themselves_and_aliases_that_reach_them(data):
    senders = mail.senders(data())
    assert senders["alice@example.org"] == ["alice@example.org"]
    assert senders["team@example.net"] == ["alice@example.org", "bob@example.net"]
    assert senders["info@example.org"] == ["alice@example.org"]
    assert "bob@example.net" not in senders["info@example.org"]


def test_report_mailboxes_exist_without_a_login(data):
    d = data()
    assert {"dmarc-reports@example.org", "tls-reports@example.org"} <= set(mail.mailboxes(d))
    passwd = imap.files(d, SYSTEM13)[0].content
    assert "alice@example.org:{SHA512-CRYPT}$6$" in passwd and "reports" not in passwd


def test_good_mail_data_has_no_problem(data):
    assert problems("mx.example.org", data()) == []
    assert problems("vps.example.org", data("vps.example.org")) == []


@pytest.mark.parametrize(("changes", "says"), [
    ({"mail_users": ["alice@example.com"]}, "mail_users[0]: 'alice@example.com' is not in one of your domains"),
    ({"mail_users": ["alice"]}, "mail_users[0]: 'alice' is not an address"),
    ({"mail_users": ["carol@example.org"]}, "mail_users[0]: carol@example.org has no password hash in"),
    ({"mail_users": ["carol@example.org"]}, "python -m tasks.password carol@example.org"),
    ({"mail_admin": "carol@example.org"}, "mail_admin: 'carol@example.org' is not one of mail_users"),
    ({"mail_aliases": {"alice@example.org": ["bob@example.net"]}}, "mail_aliases['alice@example.org']: is a mailbox"),
    ({"mail_aliases": {"x@example.org": "bob@example.net"}}, "mail_aliases['x@example.org']: must be a list"),
    ({"mail_aliases": {"x@example.com": ["bob@example.net"]}}, "mail_aliases['x@example.com']: not an address in"),
    ({"mail_relay_networks": ["10.0.0.0/33"]}, "mail_relay_networks[0]: '10.0.0.0/33' is not an IP"),
    ({"mta": "sendmail"}, "mta: 'sendmail' is not"),
    ({"mail_max_size": "big"}, "mail_max_size: 'big' is not a size"),
    ({"mail_max_size": True}, "mail_max_size: True is not a size"),
    ({"mail_aliases": {"info@example.org": ["info@example.org"]}}, "mail_aliases['info@example.org']: delivers to"),
    ({"mail_aliases": {"a@example.org": ["b@example.org"], "b@example.org": ["c@example.net"],
                       "c@example.net": ["a@example.org"]}},
     "mail_aliases['a@example.org']: loops: a@example.org -> b@example.org -> c@example.net -> a@example.org"),
    ({"mail_aliases": {"Info@example.org": ["bob@example.net"], "info@example.org": ["bob@example.net"]}},
     "mail_aliases['Info@example.org']: is there twice"),
    ({"mail_aliases": {"info@example.org": ["carol@example.org"]}}, "carol@example.org is neither a mailbox"),
    ({"mail_users": ["Alice@example.org"]}, "mail_users[0]: 'Alice@example.org' is not lower case"),
    ({"mail_users": ["alice@example.org", "alice@example.org"]}, "mail_users[1]: 'alice@example.org' is listed"),
    ({"mail_users": "alice@example.org"}, "mail_users: 'alice@example.org' is not a list"),
    ({"mail_relay_networks": ["0.0.0.0/0"]}, "mail_relay_networks[0]: 0.0.0.0/0 opens this to the whole internet"),
    ({"mail_relay_networks": ["2000::/12"]}, "mail_relay_networks[0]: 2000::/12 opens"),
    ({"mail_outbound_relay": "false"}, "mail_outbound_relay: 'false' is not True or False"),
    ({"tls_acme_email": "x`reboot`@example.org"}, "tls_acme_email: 'x`reboot`@example.org' is not an address"),
    ({"dkim_selector": "../../etc/x"}, "dkim_selector: '../../etc/x' is not a selector"),
    ({"dkim_selector": "s1\n"}, "dkim_selector: 's1\\n' is not a selector"),
])
def test_bad_mail_data_is_named(data, changes, says):
    found = problems("mx.example.org", data(**changes))
    assert any(says in p for p in found), found


def test_passwords_are_stored_as_hashes_only(tmp_path):
    store(tmp_path, "alice@example.org", "first password!")
    store(tmp_path, "bob@example.org", "second password")
    store(tmp_path, "alice@example.org", "third password!")  # replaces alice's, keeps bob's
    path = tmp_path / mail.PASSWORDS
    text = path.read_text()
    assert "password" not in text and stat.S_IMODE(path.stat().st_mode) == 0o600
    hashes = dict(line.split(" ", 1) for line in text.splitlines())
    assert sha512_crypt.verify("third password!", hashes["alice@example.org"].removeprefix("{SHA512-CRYPT}"))
    assert set(hashes) == {"alice@example.org", "bob@example.org"}


def test_mta_of_mail_host_and_relay(data):
    main = {c.path: c.content for c in mta_postfix.files(data(), SYSTEM13)}["/etc/postfix/main.cf"]
    assert "virtual_mailbox_domains = example.org example.net" in main and "relay_domains" not in main
    assert "smtpd_milters = unix:/opendkim/opendkim.sock, { unix:/rspamd/rspamd.sock, default_action=accept }\n" in main
    # Without the spam filter, opendkim checks and opendmarc judges.
    off = {c.path: c.content for c in mta_postfix.files(data(spam_enabled=False), SYSTEM13)}["/etc/postfix/main.cf"]
    assert "smtpd_milters = unix:/opendkim/opendkim.sock, unix:/opendmarc/opendmarc.sock\n" in off
    relay = {c.path: c.content for c in mta_postfix.files(data("vps.example.org"), SYSTEM13)}
    assert "smtpd_milters = { unix:/rspamd/rspamd.sock, default_action=accept }\n" in relay["/etc/postfix/main.cf"]
    assert "relay_domains = example.org example.net" in relay["/etc/postfix/main.cf"]
    # The mail host may send through the relay; IPv6 in postfix's brackets.
    assert "mynetworks = 127.0.0.0/8 [::1]/128 203.0.113.10 [2001:db8::10]" in relay["/etc/postfix/main.cf"]
    assert "submission" not in relay["/etc/postfix/master.cf"]
    recipients = relay["/etc/postfix/inhouse/recipients"]
    assert "info@example.org OK" in recipients and "postmaster@example.net OK" in recipients


@pytest.mark.parametrize(("debian", "has", "lacks"), [
    (13, ["dovecot_config_version = 2.4.0", "passwd_file_path = ", "mail_driver = maildir"], ["mail_location"]),
    (12, ["mail_location = maildir:~/Maildir", "args = /etc/dovecot/inhouse/passwd"], ["dovecot_config_version"]),
])
def test_dovecot_config_fits_the_release(data, debian, has, lacks):
    conf = next(c.content for c in imap.files(data(), SYSTEM13 | {"debian": debian})
                if c.path == "/etc/dovecot/dovecot.conf")
    assert all(h in conf for h in has) and not any(x in conf for x in lacks)


def test_exim_signs_checks_and_hands_logins_to_dovecot(data):
    d = data(mta="exim4")
    conf = {c.path: c.content for c in by_name("mta_exim").module.files(d, SYSTEM13)}["/etc/exim4/exim4.conf"]
    assert "domainlist local_domains = example.org : example.net" in conf
    assert "          spf = fail" in conf and "hosts_try_dane = *" in conf and "dkim_strict = true" in conf
    assert "server_socket = /run/dovecot/auth-exim" in conf
    assert "{{" not in conf.replace("${if or{{", "").replace("${if and{{", "")  # no template left over
    dovecot = next(c.content for c in imap.files(d, SYSTEM13) if c.path == "/etc/dovecot/dovecot.conf")
    assert "unix_listener /run/dovecot/auth-exim" in dovecot and "postfix" not in dovecot
    assert dkim.files(d, SYSTEM13) == [] and dkim.signer(d) == "Debian-exim"


def test_broken_password_lines_are_named_by_number_and_kept(data, tmp_path):
    path = tmp_path / mail.PASSWORDS
    good = path.read_text()
    path.write_text(good + "carol@example.org\n\ndave@example.org {PLAIN}pass word\n")
    found = problems("mx.example.org", data())
    assert [p for p in found if "mail-passwords: lines 3, 5 are not" in p] and "pass word" not in "".join(found)
    assert set(mail.password_hashes(data())) == {"alice@example.org", "bob@example.net"}
    with pytest.raises(ValueError, match="lines 3, 5"):  # a broken file is never rewritten
        store(tmp_path, "erin@example.org", "correct horse battery")
    assert path.read_text().startswith(good)


def test_spam_filter_is_wired_into_postfix_but_not_for_the_relays_mail_or_submission(data):
    d = data()
    confs = {c.path: c.content for c in mta_postfix.files(d, SYSTEM13)}
    main, master = confs["/etc/postfix/main.cf"], confs["/etc/postfix/master.cf"]
    assert "smtpd_milters = unix:/opendkim/opendkim.sock, { unix:/rspamd/rspamd.sock, default_action=accept }\n" in main
    # The relay's mail was judged there: its addresses get the milters without the filter
    # (the mail host's opendkim, which leaves the relay's mail alone); the relay's none.
    milters = confs[f"{mta_postfix.MAPS}/milters"]
    assert "198.51.100.20/32 unix:/opendkim/opendkim.sock\n" in milters
    assert "2001:db8::20/128 " in milters and "rspamd" not in milters
    relay = {c.path: c.content for c in mta_postfix.files(data("vps.example.org"), SYSTEM13)}
    assert "203.0.113.10/32 DISABLE\n" in relay[f"{mta_postfix.MAPS}/milters"]
    # Submissions are signed, not judged.
    assert master.count("-o smtpd_milters=unix:/opendkim/opendkim.sock\n") == 2  # 587, 465
    off = {c.path: c.content for c in mta_postfix.files(data(spam_enabled=False), SYSTEM13)}
    assert "rspamd" not in off["/etc/postfix/main.cf"] and f"{mta_postfix.MAPS}/milters" not in off


def test_spam_filter_is_wired_into_exim_but_not_for_the_relays_mail(data):
    conf = {c.path: c.content for c in by_name("mta_exim").module.files(data(mta="exim4"), SYSTEM13)}
    exim = conf["/etc/exim4/exim4.conf"]
    assert "spamd_address = 127.0.0.1 11333 variant=rspamd" in exim
    assert "  warn    !hosts = +backup_mx\n          spam = nobody:true\n" in exim
    assert "condition = ${if eq{$spam_action}{reject}}" in exim
    assert "add_header = X-Spam: Yes" in exim


@pytest.mark.parametrize("debian, has", [
    (13, ["sieve_script spam-to-junk {", "imapsieve_from Junk {", "cause = copy", "imap_sieve = yes"]),
    (12, ["sieve_before = /etc/dovecot/sieve/spam-to-junk.sieve", "imapsieve_mailbox2_from = Junk",
          "mail_plugins = $mail_plugins imap_sieve"]),
])
def test_junk_filing_and_learning_fit_the_dovecot_release(data, debian, has):
    files = {c.path: c for c in imap.files(data(), SYSTEM13 | {"debian": debian})}
    conf = files["/etc/dovecot/dovecot.conf"].content
    assert all(h in conf for h in has), conf
    # The scripts are compiled as they are checked; the programs they pipe to learn.
    assert all(files[p].check == "sievec {path}" for p in files if p.endswith(".sieve"))
    assert "learn_spam" in files[f"{imap.SIEVE}/rspamd-learn-spam"].content
    assert "dovecot-sieve" in imap.packages(data())
    off = {c.path: c.content for c in imap.files(data(spam_enabled=False), SYSTEM13 | {"debian": debian})}
    assert "sieve" not in off["/etc/dovecot/dovecot.conf"] and not [p for p in off if "sieve" in p]


def test_spam_scores_must_leave_room_for_junk(data):
    errors = problems("mx.example.org", data(spam_junk_score=20, spam_reject_score=15))
    assert errors == ["mx.example.org: spam_junk_score: 20 is not below spam_reject_score (15): "
                      "nothing would go to Junk"], errors
    assert problems("mx.example.org", data(spam_reject_score="15")) == [
        "mx.example.org: spam_reject_score: '15' is not a score from 1 to 1000"]


def test_each_milter_listens_where_postfix_in_its_chroot_asks(data):
    """opendkim, opendmarc and rspamd's proxy make their sockets in postfix's chroot, in a
    folder their service makes (setgid postfix); main.cf names each as smtpd sees it."""
    d = data()
    main = {c.path: c.content for c in mta_postfix.files(d, SYSTEM13)}["/etc/postfix/main.cf"]
    confs = {c.path: c.content for m in (dkim, dmarc, spam) for c in m.files(d, SYSTEM13)}
    confs |= {c.path: c.content for c in dmarc.files(data(spam_enabled=False), SYSTEM13)}
    main += {c.path: c.content for c in mta_postfix.files(data(spam_enabled=False), SYSTEM13)}["/etc/postfix/main.cf"]
    told = {milter.DKIM: confs["/etc/opendkim.conf"], milter.DMARC: confs["/etc/opendmarc.conf"],
            milter.SPAM: confs[f"{spam.LOCAL}/worker-proxy.inc"]}
    for m, conf in told.items():
        assert m.socket in conf and m.socket == milter.SPOOL + m.address.removeprefix("unix:"), m
        assert m.address in main, m
        dropin = confs[m.dropin(d).path]
        assert f"-o {m.user} -g postfix -m 2750 {milter.SPOOL}/{m.name}" in dropin and m.socket in dropin
    assert "inet:" not in main.split("smtpd_milters")[1].split("\n")[0]


def test_rspamd_judges_spf_dkim_and_dmarc_with_postfix_opendkim_only_signs(data):
    """With the spam filter on, rspamd writes Authentication-Results and opendkim only
    signs; without it, opendkim checks too; exim judges by itself."""
    def conf(**d):
        return {c.path: c.content for m in (dkim, spam) for c in m.files(data(**d), SYSTEM13)}
    on, off = conf(), conf(spam_enabled=False)
    assert "\nMode                    s\n" in on["/etc/opendkim.conf"] and "AlwaysAddARHeader" not in on[
        "/etc/opendkim.conf"]
    assert '"authentication-results"' in on[f"{spam.LOCAL}/milter_headers.conf"]
    assert "\nMode                    sv\n" in off["/etc/opendkim.conf"] and "AlwaysAddARHeader       yes" in off[
        "/etc/opendkim.conf"]
    assert '"authentication-results"' not in conf(mta="exim4")[f"{spam.LOCAL}/milter_headers.conf"]
