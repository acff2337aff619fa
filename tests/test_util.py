"""The shared machinery, without a host: what a diff may show."""

from tasks.util import ConfigFile, masked


def test_diffs_mask_hashes_tsig_secrets_and_key_material():
    assert masked("alice@example.org:{SHA512-CRYPT}$6$salt$abcdef/.") == "alice@example.org:{SHA512-CRYPT}********"
    assert masked('    secret "c2VjcmV0c2VjcmV0c2VjcmV0";') == '    secret "********";'
    assert masked('\tsecret: "c2VjcmV0c2VjcmV0c2VjcmV0"') == '\tsecret: "********"'
    assert masked("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7") == "********"
    # What is not secret stays readable.
    assert masked("maxretry = 5") == "maxretry = 5"
    assert masked("smtpd_banner = $myhostname ESMTP") == "smtpd_banner = $myhostname ESMTP"


def test_private_files_are_those_others_cannot_read():
    assert ConfigFile("/x", "", mode="640").private and ConfigFile("/x", "", mode="600").private
    assert not ConfigFile("/x", "", mode="644").private and not ConfigFile("/x", "", mode="755").private
