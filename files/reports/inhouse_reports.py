#!/usr/bin/python3 -I
# Managed by inhouse from files/reports/inhouse_reports.py; local edits are overwritten.
"""inhouse-reports: what other mail servers report about our mail, summed up.

    inhouse-reports                 the summary of the last days, up to now
    inhouse-reports --whole-days    the same, up to last midnight (the weekly timer)
    inhouse-reports --mail          then mail it, as text, to the admin
    inhouse-reports --check         check the config file and stop

Receivers that honour our DMARC record send aggregate reports (RFC 7489 section 7.2,
XML as in appendix C, in gzip or zip); senders that honour our TLS-RPT record send TLS
reports (RFC 8460, JSON, usually gzip). Both land in Maildirs of their own. Each run reads
every message delivered to them in the window, from local midnight `days` days ago to now
(or to last midnight: --whole-days), by the time the message arrived (its file's mtime),
and writes the whole summary (JSON) again: runs are idempotent, no message is moved or
marked. Runs with --whole-days a week apart cover every message exactly once (a run a day
late, after downtime, misses or repeats that day). A report sent twice (same organisation
and report id) counts once.

The messages come from anyone who can send mail. Each is read within bounds (its size,
what an attachment unpacks to, the files of a zip), XML through defusedxml with no DTD at
all (no entity expansion, no external entities), JSON checked for its shape; a message
that breaks a bound or the format is skipped, named with its reason in the summary and on
stderr (the journal), and the run goes on. Run as root, the reading happens in a child
process as the Maildirs' owner with a bounded address space: a flaw in a parser meets an
account that reads mail, not root. The parent writes the summary and sends the mail.
"""

import argparse
import configparser
import datetime
import email
import email.parser  # email imports it when it parses: before the reading process drops its rights
import email.policy
import gzip
import io
import ipaddress
import json
import os
import pwd
import re
import resource
import subprocess
import sys
import zipfile
import zlib
from email.message import EmailMessage
from pathlib import Path

import defusedxml
import defusedxml.ElementTree as SafeElementTree

CONFIG = "/etc/inhouse/reports.conf"
SENDMAIL = ["/usr/sbin/sendmail", "-odi", "-oi", "-t"]  # -oi: a line of one dot does not end the message
MIB = 1024 * 1024
MAX_MESSAGE = 20 * MIB  # a report's message is kilobytes; a bigger one is not read
MAX_UNPACKED = 20 * MIB  # what one attachment may unpack to, zip members together: a zip bomb stops here
MAX_ATTACHMENTS = 10  # report attachments read per message
MAX_MEMBERS = 10  # files read per zip
MAX_SKIPPED = 100  # skipped messages listed in the summary (all are counted)
MAX_TEXT = 200  # characters kept of any text from a message: names, report ids, subjects
CHILD_MEMORY = 1024 * MIB  # more address space the reading process may take
MAX_ROWS = 50  # sources per domain in the mail (all are in the JSON)
# Media types of report attachments: RFC 7489 7.2.1.1 (gzip, zip; and what reporters use
# besides), RFC 8460 5.3 (tlsrpt+gzip, tlsrpt+json); other parts only by a report's file name.
REPORT_TYPES = {"application/gzip", "application/x-gzip", "application/zip", "application/x-zip-compressed",
                "application/x-zip", "application/xml", "text/xml", "application/json", "application/tlsrpt+gzip",
                "application/tlsrpt+json", "application/octet-stream"}
REPORT_NAMES = (".xml", ".gz", ".gzip", ".zip", ".json")
DISPOSITIONS = ("none", "quarantine", "reject")  # RFC 7489 appendix C, DispositionType
# Control characters, line and paragraph separators, bidirectional overrides: nothing from
# a message may add a line to the mail or the log, or turn text around.
UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]+")
HOSTNAME = re.compile(r"(?=.{1,253}\Z)((?!-)[a-z0-9_-]{1,63}(?<!-)\.)*(?!-)[a-z0-9-]{1,63}(?<!-)")
TOKEN = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")  # RFC 8460 result and policy types
ADDRESS = re.compile(r"[^@\s]+@[a-z0-9.-]+")
CONFIG_KEYS = {"mailboxes", "domains", "days", "admin", "summary", "user"}


class Bad(Exception):
    """A message, report or config that is not what it should be; the text says why."""


def clean(value, limit: int = MAX_TEXT) -> str:
    """Text from outside, safe for a log line, a mail and JSON: one line, cut short."""
    return UNPRINTABLE.sub(" ", str(value)).strip()[:limit]


# --- Unpacking -------------------------------------------------------------------------

def gunzip(blob: bytes) -> bytes:
    """gzip, inflated no further than MAX_UNPACKED + 1 bytes (GzipFile inflates what is read)."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(blob)) as f:
            data = f.read(MAX_UNPACKED + 1)
    except EOFError as e:
        raise Bad("truncated gzip") from e
    except (OSError, zlib.error) as e:
        raise Bad(f"broken gzip ({clean(e)})") from e
    if len(data) > MAX_UNPACKED:
        raise Bad(f"gzip unpacks to more than {MAX_UNPACKED // MIB} MiB")
    return data


def unzip(blob: bytes) -> list[tuple[str, bytes]]:
    """The files of a zip, MAX_UNPACKED bytes in all, each read with that limit (the sizes
    its directory claims may lie)."""
    out, total = [], 0
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as z:
            members = [m for m in z.infolist() if not m.is_dir()]
            if not members or len(members) > MAX_MEMBERS:
                raise Bad(f"zip with {len(members)} files (1 to {MAX_MEMBERS} read)")
            for member in members:
                if member.file_size > MAX_UNPACKED - total:
                    raise Bad(f"zip unpacks to more than {MAX_UNPACKED // MIB} MiB")
                with z.open(member) as f:
                    data = f.read(MAX_UNPACKED - total + 1)
                total += len(data)
                if total > MAX_UNPACKED:
                    raise Bad(f"zip unpacks to more than {MAX_UNPACKED // MIB} MiB")
                out.append((clean(member.filename), data))
    except Bad:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError, OSError, EOFError,
            zlib.error, ValueError) as e:  # encrypted, an unknown method, a bad CRC...
        raise Bad(f"broken zip ({clean(e)})") from e
    return out


def unpack(blob: bytes, name: str = "") -> list[tuple[str, bytes]]:
    """The documents in an attachment, by what its bytes are (names and media types lie)."""
    if blob[:2] == b"\x1f\x8b":
        return [(name, gunzip(blob))]
    if blob[:4] == b"PK\x03\x04":
        return unzip(blob)
    if len(blob) > MAX_UNPACKED:
        raise Bad(f"larger than {MAX_UNPACKED // MIB} MiB")
    return [(name, blob)]


# --- Parsing ---------------------------------------------------------------------------

def domain_name(value) -> str:
    name = str(value).strip().lower().removesuffix(".")
    if not HOSTNAME.fullmatch(name):
        raise Bad(f"{clean(value, 80)!r} is not a domain name")
    return name


def ip_address(value) -> str:
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError as e:
        raise Bad(f"{clean(value, 80)!r} is not an IP address") from e


def count(value, what: str) -> int:
    """A count of sessions or messages: a whole number, not absurd (a JSON true is not 1)."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d{1,15}\s*", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise Bad(f"{what}: {clean(value, 40)!r} is not a count")
    return value


def parse(document: bytes) -> dict:
    """A report: DMARC (XML) or TLS-RPT (JSON), told by its first character."""
    start = document.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"<":
        return parse_dmarc(document)
    if start == b"{":
        return parse_tlsrpt(document)
    raise Bad("neither a DMARC report (XML) nor a TLS report (JSON)")


def parse_dmarc(document: bytes) -> dict:
    """An aggregate report (RFC 7489 appendix C): {"kind": "dmarc", "org", "id", "begin",
    "end" (Unix times), "domain", "rows": [{"ip", "count", "disposition", "dkim", "spf"}]}.
    A DTD is refused outright: reports have none, and it is where entity expansion
    ("billion laughs") and external entities live."""
    try:
        root = SafeElementTree.fromstring(document, forbid_dtd=True)
    except defusedxml.DTDForbidden as e:
        raise Bad("XML with a DTD (refused: entities)") from e
    except defusedxml.DefusedXmlException as e:
        raise Bad(f"XML refused ({type(e).__name__})") from e
    except SafeElementTree.ParseError as e:
        raise Bad(f"broken XML ({clean(e)})") from e
    for element in root.iter():  # with or without a namespace (DMARCbis adds one)
        if isinstance(element.tag, str):
            element.tag = element.tag.rsplit("}", 1)[-1]
    if root.tag != "feedback":
        raise Bad(f"XML, but not a DMARC report (<{clean(root.tag, 40)}>, not <feedback>)")

    def field(element, path: str) -> str:
        found = (element.findtext(path) or "").strip()
        if not found:
            raise Bad(f"a DMARC report without {path}")
        return found

    report = {"kind": "dmarc", "org": clean(field(root, "report_metadata/org_name")),
              "id": clean(field(root, "report_metadata/report_id")),
              "begin": count(field(root, "report_metadata/date_range/begin"), "date_range/begin"),
              "end": count(field(root, "report_metadata/date_range/end"), "date_range/end"),
              "domain": domain_name(field(root, "policy_published/domain")), "rows": []}
    for record in root.iterfind("record"):
        disposition = field(record, "row/policy_evaluated/disposition").lower()
        if disposition not in DISPOSITIONS:
            raise Bad(f"disposition {clean(disposition, 40)!r} is not one of {', '.join(DISPOSITIONS)}")
        report["rows"].append({
            "ip": ip_address(field(record, "row/source_ip")), "count": count(field(record, "row/count"), "row/count"),
            "disposition": disposition,
            # DMARC's own verdicts on alignment: anything but pass is a fail (RFC 7489 appendix C).
            **{k: "pass" if field(record, f"row/policy_evaluated/{k}").lower() == "pass" else "fail"
               for k in ("dkim", "spf")}})
    return report


JSON_TYPES = {str: "a string", int: "a number", list: "a list", dict: "an object"}


def member(obj, key: str, kind: type, where: str):
    """obj[key], of the JSON type `kind` (a JSON true is no number)."""
    if not isinstance(obj, dict) or not isinstance(obj.get(key), kind) or isinstance(obj.get(key), bool):
        raise Bad(f"not a TLS report (RFC 8460 section 4.4): {where}{key} is missing or not {JSON_TYPES[kind]}")
    return obj[key]


def timestamp(value: str, what: str) -> int:
    try:
        moment = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as e:
        raise Bad(f"{what}: {clean(value, 40)!r} is not a date and time") from e
    if not moment.tzinfo:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp())


def parse_tlsrpt(document: bytes) -> dict:
    """A TLS report (RFC 8460 section 4.4): {"kind": "tlsrpt", "org", "id", "begin", "end",
    "policies": [{"domain", "type", "successful", "failed", "failures": [{"result", "mx",
    "count"}]}]}; "mx" is the receiving MX's name, else its address, else empty."""
    try:
        doc = json.loads(document)
    except (ValueError, RecursionError) as e:  # bad UTF-8 and too deep nesting too
        raise Bad(f"broken JSON ({clean(e, 80)})") from e
    dates = member(doc, "date-range", dict, "")
    report = {"kind": "tlsrpt", "org": clean(member(doc, "organization-name", str, "")),
              "id": clean(member(doc, "report-id", str, "")),
              "begin": timestamp(member(dates, "start-datetime", str, "date-range."), "start-datetime"),
              "end": timestamp(member(dates, "end-datetime", str, "date-range."), "end-datetime"), "policies": []}
    if not member(doc, "policies", list, ""):
        raise Bad("a TLS report without policies")
    for i, item in enumerate(doc["policies"]):
        where = f"policies[{i}]."
        policy, summary = member(item, "policy", dict, where), member(item, "summary", dict, where)
        kind = member(policy, "policy-type", str, f"{where}policy.").lower()
        if not TOKEN.fullmatch(kind):
            raise Bad(f"{where}policy.policy-type: {clean(kind, 40)!r} is not a policy type")
        failures = []
        details = item.get("failure-details", [])
        if not isinstance(details, list):
            raise Bad(f"not a TLS report (RFC 8460 section 4.4): {where}failure-details is not a list")
        for j, detail in enumerate(details):
            at = f"{where}failure-details[{j}]."
            result = member(detail, "result-type", str, at).lower()
            if not TOKEN.fullmatch(result):
                raise Bad(f"{at}result-type: {clean(result, 40)!r} is not a result type")
            mx = detail.get("receiving-mx-hostname")
            if isinstance(mx, str) and mx.strip():
                mx = domain_name(mx)
            elif isinstance(detail.get("receiving-ip"), str):
                mx = ip_address(detail["receiving-ip"])
            else:
                mx = ""
            sessions = member(detail, "failed-session-count", int, at)
            failures.append({"result": result, "mx": mx, "count": count(sessions, f"{at}failed-session-count")})
        report["policies"].append({
            "domain": domain_name(member(policy, "policy-domain", str, f"{where}policy.")), "type": kind,
            "successful": count(member(summary, "total-successful-session-count", int, f"{where}summary."),
                                "total-successful-session-count"),
            "failed": count(member(summary, "total-failure-session-count", int, f"{where}summary."),
                            "total-failure-session-count"),
            "failures": failures})
    return report


# --- Messages --------------------------------------------------------------------------

def header(message, name: str) -> str:
    try:
        return clean(message.get(name, ""))
    except Exception:  # a header that does not even parse names no one
        return ""


def read_message(path: Path) -> tuple[list[dict], list[str], dict]:
    """The reports in one message file, the problems of its report attachments that are
    none, and its sender and subject (to name it). Never raises: whatever goes wrong is a
    problem of this message only."""
    names = {"from": "", "subject": ""}
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_MESSAGE + 1)
        if len(raw) > MAX_MESSAGE:
            return [], [f"message larger than {MAX_MESSAGE // MIB} MiB, not read"], names
        message = email.message_from_bytes(raw, policy=email.policy.default)
        names = {"from": header(message, "From"), "subject": header(message, "Subject")}
        reports, problems, attachments = [], [], 0
        for part in message.walk():
            if part.is_multipart():
                continue
            filename = clean(part.get_filename() or "", 80)
            if part.get_content_type() not in REPORT_TYPES and not filename.lower().endswith(REPORT_NAMES):
                continue
            attachments += 1
            if attachments > MAX_ATTACHMENTS:
                problems.append(f"more than {MAX_ATTACHMENTS} attachments; the rest not read")
                break
            label = filename or part.get_content_type()
            try:
                for name, document in unpack(part.get_payload(decode=True) or b"", label):
                    try:
                        reports.append(parse(document))
                    except Bad as e:
                        problems.append(f"{name or label}: {e}")
            except Bad as e:
                problems.append(f"{label}: {e}")
        if not attachments:
            problems.append("no report attached")
        return reports, problems, names
    except Exception as e:  # a parser's own failure (MemoryError, RecursionError...): skip, go on
        return [], [f"cannot be read ({type(e).__name__}: {clean(e, 80)})"], names


def delivered(maildir: Path, since: float, until: float) -> list[tuple[Path, float]]:
    """The messages of a Maildir (new/ and cur/) delivered in [since, until), by their
    file's mtime (the delivery: dovecot writes each message once; flags only rename it)."""
    found = []
    for folder in ("new", "cur"):
        try:
            entries = list(os.scandir(maildir / folder))
        except FileNotFoundError:  # nothing delivered yet: dovecot makes it on the first
            continue
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            try:
                mtime = entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:  # moved from new/ to cur/ meanwhile: found there, or next time
                continue
            if since <= mtime < until:
                found.append((Path(entry.path), mtime))
    return sorted(found, key=lambda x: (x[1], x[0].name))


def ours(domain: str, domains: list[str]) -> bool:
    return any(domain == d or domain.endswith(f".{d}") for d in domains)


def not_ours(report: dict, domains: list[str]) -> str:
    """Why a report is about none of our domains (anyone may mail the report addresses), or
    "". A TLS report keeps only its policies of our domains."""
    if report["kind"] == "dmarc":
        return "" if ours(report["domain"], domains) else f"a DMARC report about {report['domain']}, not ours"
    foreign = sorted({p["domain"] for p in report["policies"] if not ours(p["domain"], domains)})
    report["policies"] = [p for p in report["policies"] if ours(p["domain"], domains)]
    return f"a TLS report about {', '.join(foreign)}, not ours" if foreign and not report["policies"] else ""


def iso(moment: float, utc: bool = True) -> str:
    """A Unix time as ISO 8601: in UTC (2026-12-03T10:15:02Z), or local with its offset."""
    if utc:
        return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return datetime.datetime.fromtimestamp(moment).astimezone().isoformat(timespec="seconds")


def collect(config: dict, since: float, until: float) -> dict:
    """Read every report message delivered in [since, until) and sum them up
    (summarise()); also what was skipped, and Maildirs that could not be read."""
    reports, skipped, errors, seen, messages = [], [], [], set(), 0
    for address, maildir in config["mailboxes"]:
        try:
            found = delivered(Path(maildir), since, until)
        except OSError as e:
            errors.append(f"{address}: cannot read {maildir} ({e.strerror or e})")
            print(f"inhouse-reports: {errors[-1]}", file=sys.stderr)
            continue
        for path, mtime in found:
            messages += 1
            got, problems, names = read_message(path)
            for report in got:
                key = (report["kind"], report["org"], report["id"])
                if foreign := not_ours(report, config["domains"]):
                    problems.append(foreign)
                    continue
                if key in seen:
                    problems.append(f"a copy of report {report['id']!r} of {report['org']!r}, counted once")
                    continue
                seen.add(key)
                reports.append(report)
            if problems:
                entry = {"mailbox": address, "file": f"{path.parent.name}/{path.name}", "delivered": iso(mtime),
                         **names, "reason": "; ".join(problems)}
                print(f"inhouse-reports: skipped {address} {entry['file']} (from {names['from'] or '?'}): "
                      f"{entry['reason']}", file=sys.stderr)
                skipped.append(entry)
    return summarise(reports) | {
        "messages": messages, "skipped_count": len(skipped), "skipped": skipped[:MAX_SKIPPED], "errors": errors}


def summarise(reports: list[dict]) -> dict:
    """The sums of the reports, by domain (the JSON's "reports", "dmarc" and "tlsrpt")."""
    dmarc, tlsrpt = {}, {}

    def span(sums: dict, domain: str, r: dict, **more) -> dict:
        """The sums of a domain, with this report counted: how many, by whom, the dates."""
        s = sums.setdefault(domain, {"reports": 0, "reporters": {}, "begin": r["begin"], "end": r["end"], **more})
        s["reports"] += 1
        s["reporters"][r["org"]] = s["reporters"].get(r["org"], 0) + 1
        s["begin"], s["end"] = min(s["begin"], r["begin"]), max(s["end"], r["end"])
        return s

    for r in (r for r in reports if r["kind"] == "dmarc"):
        d = span(dmarc, r["domain"], r, messages=0, sources={})
        for row in r["rows"]:
            d["messages"] += row["count"]
            source = d["sources"].setdefault(row["ip"], {
                "messages": 0, "dmarc": {"pass": 0, "fail": 0}, "dkim": {"pass": 0, "fail": 0},
                "spf": {"pass": 0, "fail": 0}, "disposition": dict.fromkeys(DISPOSITIONS, 0), "reporters": []})
            source["messages"] += row["count"]
            # DMARC passes when DKIM or SPF passes aligned (RFC 7489 section 4.2).
            source["dmarc"]["pass" if "pass" in (row["dkim"], row["spf"]) else "fail"] += row["count"]
            for k in ("dkim", "spf"):
                source[k][row[k]] += row["count"]
            source["disposition"][row["disposition"]] += row["count"]
            source["reporters"] = sorted({*source["reporters"], r["org"]})
    for r in (r for r in reports if r["kind"] == "tlsrpt"):
        for domain in sorted({p["domain"] for p in r["policies"]}):
            span(tlsrpt, domain, r, successful=0, failed=0, failures={"by_result": {}, "by_mx": {}})
        for p in r["policies"]:
            t = tlsrpt[p["domain"]]
            t["successful"] += p["successful"]
            t["failed"] += p["failed"]
            for f in p["failures"]:
                for key, value in (("by_result", f["result"]), ("by_mx", f["mx"] or "(not named)")):
                    t["failures"][key][value] = t["failures"][key].get(value, 0) + f["count"]
    for s in [*dmarc.values(), *tlsrpt.values()]:
        s["begin"], s["end"] = iso(s["begin"]), iso(s["end"])
    return {"reports": {"dmarc": sum(r["kind"] == "dmarc" for r in reports),
                        "tlsrpt": sum(r["kind"] == "tlsrpt" for r in reports)},
            "dmarc": dmarc, "tlsrpt": tlsrpt}


def collect_as(config: dict, since: float, until: float) -> dict:
    """collect() in a child process as the config's user (the Maildirs' owner), with a
    bounded address space, when a user is named: it reads what strangers sent. The parent
    reads back nothing but its JSON."""
    if not config["user"]:
        return collect(config, since, until)
    try:
        account = pwd.getpwnam(config["user"])
    except KeyError as e:
        raise Bad(f"no user {config['user']}") from e
    if os.geteuid() not in (0, account.pw_uid):
        raise Bad(f"run as root or as {config['user']}")
    sys.stdout.flush()
    sys.stderr.flush()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        status = 1
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(account.pw_gid)
                os.setuid(account.pw_uid)
            mapped = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            resource.setrlimit(resource.RLIMIT_AS, (mapped + CHILD_MEMORY, resource.getrlimit(resource.RLIMIT_AS)[1]))
            with os.fdopen(write, "wb") as out:
                out.write(json.dumps(collect(config, since, until)).encode())
            status = 0
        except BaseException as e:
            print(f"inhouse-reports: reading the reports failed: {type(e).__name__}: {e}", file=sys.stderr)
        finally:
            sys.stderr.flush()
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise Bad("the process reading the reports failed")
    return json.loads(data)


# --- The summary, as JSON and as text --------------------------------------------------

def window(days: int, whole_days: bool, now: datetime.datetime) -> tuple[float, float]:
    """[since, until) as Unix times: from local midnight `days` days before today, to now
    or (whole_days) to last midnight."""
    today = datetime.datetime.combine(now.date(), datetime.time()).astimezone()
    start = datetime.datetime.combine(now.date() - datetime.timedelta(days=days), datetime.time()).astimezone()
    return start.timestamp(), (today if whole_days else now).timestamp()


def summary(config: dict, whole_days: bool, now: datetime.datetime) -> dict:
    """The whole summary (the JSON): the window, then what collect() found in it."""
    since, until = window(config["days"], whole_days, now)
    return {"version": 1, "generated": iso(now.timestamp()),
            "since": iso(since, utc=False), "until": iso(until, utc=False), "days": config["days"],
            "domains": config["domains"], **collect_as(config, since, until)}


def write_summary(path: str, data: dict):
    """Atomically: a reader (the check, over SSH) sees the old summary or the new one."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    os.fchmod(fd, 0o640)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(temporary, target)


def text(data: dict, where: str) -> tuple[str, str]:
    """(subject, body) of the summary for a person; `where`: the JSON's path and host."""
    since = datetime.datetime.fromisoformat(data["since"])
    until = datetime.datetime.fromisoformat(data["until"])
    last = (until - datetime.timedelta(seconds=1)).date()
    domains = data["domains"][0] + (f" and {len(data['domains']) - 1} more" if len(data["domains"]) > 1 else "")
    subject = f"DMARC and TLS reports for {domains}, {since:%Y-%m-%d} to {last:%Y-%m-%d} ({data['generated']})"
    out = [f"What other mail servers reported about mail of {', '.join(data['domains'])},",
           f"in the reports delivered from {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} ({until:%z}).",
           f"The data: {where}.", ""]
    if not data["dmarc"] and not data["tlsrpt"]:
        out += ["No report arrived.", ""]
    if data["dmarc"]:
        out += ["DMARC aggregate reports (RFC 7489): mail with your domains in From, by the address that",
                "sent it, and what the receivers did with it. A source that fails DMARC is yours and",
                "misconfigured (not in SPF, not signing), or someone else using your name.", ""]
    for domain, d in sorted(data["dmarc"].items()):
        failed = sum(s["dmarc"]["fail"] for s in d["sources"].values())
        out.append(f"{domain}: {plural(d['reports'], 'report')} ({reporters(d['reporters'])}), "
                   f"{plural(d['messages'], 'message')}, {failed} failed DMARC")
        rows = sorted(d["sources"].items(), key=lambda x: (-x[1]["dmarc"]["fail"], -x[1]["messages"], x[0]))
        width = max(15, *(len(ip) for ip, _ in rows[:MAX_ROWS]))
        out.append(f"  {'source':<{width}}  messages  DMARC fail  DKIM fail  SPF fail  quarantined  rejected"
                   "  reported by")
        for ip, s in rows[:MAX_ROWS]:
            out.append(f"  {ip:<{width}}  {s['messages']:>8}  {s['dmarc']['fail']:>10}  {s['dkim']['fail']:>9}  "
                       f"{s['spf']['fail']:>8}  {s['disposition']['quarantine']:>11}  "
                       f"{s['disposition']['reject']:>8}  {', '.join(s['reporters'])}")
        if len(rows) > MAX_ROWS:
            out.append(f"  and {len(rows) - MAX_ROWS} more sources (in the data)")
        out.append("")
    if data["tlsrpt"]:
        out += ["TLS reports (RFC 8460): the TLS sessions of other servers to your MX hosts; a failure is",
                "mail that waited or did not arrive (an expired certificate, a TLSA record or MTA-STS",
                "policy that does not match).", ""]
    for domain, t in sorted(data["tlsrpt"].items()):
        out.append(f"{domain}: {plural(t['reports'], 'report')} ({reporters(t['reporters'])}), "
                   f"{t['successful']} sessions succeeded, {t['failed']} failed")
        for title, key in (("by reason", "by_result"), ("by MX", "by_mx")):
            if t["failures"][key]:
                counts = sorted(t["failures"][key].items(), key=lambda x: (-x[1], x[0]))
                out.append(f"  failed {title}: " + ", ".join(f"{k}: {n}" for k, n in counts))
        out.append("")
    if data["skipped_count"]:
        out.append(f"Skipped: {plural(data['skipped_count'], 'message')}, not counted"
                   + (f" (the first {MAX_SKIPPED} in the data)" if data["skipped_count"] > MAX_SKIPPED else ""))
        for s in data["skipped"]:
            out.append(f"  {s['delivered'][:10]} {s['mailbox']}: {s['subject'][:60]!r} from {s['from'][:60] or '?'}")
            out.append(f"    {s['reason']}")
        out.append("")
    for error in data["errors"]:
        out.append(f"Not read: {error}")
    return subject, "\n".join(out).rstrip() + "\n"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def reporters(orgs: dict[str, int]) -> str:
    return ", ".join(f"{org} {n}" for org, n in sorted(orgs.items(), key=lambda x: (-x[1], x[0])))


def mail(data: dict, admin: str, where: str) -> EmailMessage:
    subject, body = text(data, where)
    message = EmailMessage()
    message["To"] = admin
    message["Subject"] = subject
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    message.set_content(body)
    return message


def send(message: EmailMessage):
    r = subprocess.run(SENDMAIL, input=message.as_bytes(), capture_output=True, timeout=120)
    if r.returncode != 0:
        raise Bad(f"sendmail failed: {clean(r.stderr.decode(errors='replace'), 400)}")


# --- Config and command line -----------------------------------------------------------

def read_config(path: str) -> dict:
    """The config file (INI, section [reports]), checked: what the run needs, nothing else."""
    parser = configparser.ConfigParser(interpolation=configparser.Interpolation())  # values as they are
    try:
        with open(path) as f:
            parser.read_file(f)
    except (OSError, configparser.Error, UnicodeDecodeError) as e:
        raise Bad(f"cannot be read ({clean(e)})") from e
    if parser.sections() != ["reports"]:
        raise Bad("must have one section, [reports]")
    section = parser["reports"]
    if unknown := set(section) - CONFIG_KEYS:
        raise Bad(f"unknown settings: {', '.join(sorted(unknown))}")
    if missing := CONFIG_KEYS - {"user"} - set(section):
        raise Bad(f"missing settings: {', '.join(sorted(missing))}")
    mailboxes = []
    for line in section["mailboxes"].splitlines():
        if not line.strip():
            continue
        address, _, maildir = line.strip().partition(" ")
        if not ADDRESS.fullmatch(address) or not maildir.strip().startswith("/"):
            raise Bad(f"mailboxes: {clean(line, 80)!r} is not 'ADDRESS /PATH/TO/Maildir'")
        mailboxes.append((address, maildir.strip()))
    domains = section["domains"].split()
    if not mailboxes or not domains or any(not HOSTNAME.fullmatch(d) for d in domains):
        raise Bad("mailboxes and domains must name at least one each (domains in lower case)")
    if not re.fullmatch(r"\d{1,3}", section["days"].strip()) or not 1 <= int(section["days"]) <= 366:
        raise Bad(f"days: {section['days']!r} is not a number of days from 1 to 366")
    if not ADDRESS.fullmatch(section["admin"].strip()):
        raise Bad(f"admin: {section['admin']!r} is not an address")
    if not section["summary"].strip().startswith("/"):
        raise Bad("summary: not an absolute path")
    return {"mailboxes": mailboxes, "domains": domains, "days": int(section["days"]),
            "admin": section["admin"].strip(), "summary": section["summary"].strip(),
            "user": section.get("user", "").strip()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inhouse-reports", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mail", action="store_true", help="mail the summary to the admin too")
    parser.add_argument("--whole-days", action="store_true", help="end at last midnight, not now")
    parser.add_argument("--check", action="store_true", help="check the config file and stop")
    parser.add_argument("--config", default=CONFIG, help=f"the config file (default {CONFIG})")
    args = parser.parse_args(argv)
    try:
        config = read_config(args.config)
    except Bad as e:
        print(f"inhouse-reports: {args.config}: {e}", file=sys.stderr)
        return 2
    if args.check:
        return 0
    try:
        data = summary(config, args.whole_days, datetime.datetime.now().astimezone())
        write_summary(config["summary"], data)
        if args.mail:
            send(mail(data, config["admin"], f"{config['summary']} on {os.uname().nodename}"))
    except (Bad, OSError, subprocess.SubprocessError) as e:
        print(f"inhouse-reports: {e}", file=sys.stderr)
        return 1
    return 1 if data["errors"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
