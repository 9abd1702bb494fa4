"""Who signs a release's Content Credentials: a certificate chain and its private key.

The producer configures one with two file paths in the environment (never in a spec):
MILLAMUSIC_SIGNING_CERT (PEM: the signing certificate first, then its issuers) and
MILLAMUSIC_SIGNING_KEY (PEM, PKCS#8). Without them, a local identity is created on first use:
a self-made root CA and a signing certificate under it, kept in MILLAMUSIC_IDENTITY_DIR (default
$XDG_DATA_HOME/millamusic/identity) and reported as self-signed wherever it is used. A reader
can check that the files were not changed since signing, but nobody vouches for a local identity.

C2PA's signer (c2pa-rs) wants an end-entity certificate with keyUsage digitalSignature, an
extended key usage it accepts (emailProtection) and an authority key identifier; the chain
below is the recipe that signs and verifies (tested by tests/test_provenance.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from millamusic.core.errors import ExportError
from millamusic.core.files import atomic_path

CERT_ENV, KEY_ENV, DIR_ENV = "MILLAMUSIC_SIGNING_CERT", "MILLAMUSIC_SIGNING_KEY", "MILLAMUSIC_IDENTITY_DIR"
SELF_SIGNED_YEARS = 10  # without a timestamp authority a manifest turns invalid when its certificate expires
SELF_SIGNED_ORG = "millamusic local identity (self-signed)"


@dataclass(frozen=True)
class SigningIdentity:
    chain_pem: bytes  # the signing certificate, then its issuers
    key_pem: bytes
    self_signed: bool  # a local identity nobody vouches for
    source: str  # where it came from, in words

    @property
    def fingerprint(self) -> str:
        """sha256 of the certificate chain: the export cache key holds who signed, never the key."""
        return hashlib.sha256(self.chain_pem).hexdigest()

    @property
    def subject(self) -> str:
        from cryptography import x509  # cryptography: ~0.1 s, only where certificates are read

        return x509.load_pem_x509_certificates(self.chain_pem)[0].subject.rfc4514_string()


def identity_dir() -> Path:
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV])
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data / "millamusic" / "identity"


def load_identity() -> SigningIdentity:
    """The configured identity, else the local self-signed one (created on first use).

    Raises ExportError naming the variable and the file when a configured one cannot be read.
    """
    cert, key = os.environ.get(CERT_ENV), os.environ.get(KEY_ENV)
    if cert or key:
        if not (cert and key):
            raise ExportError(f"set both {CERT_ENV} and {KEY_ENV} (PEM files), or neither for the local "
                              "self-signed identity")
        chain, private = (_read_pem(Path(p), name) for p, name in ((cert, CERT_ENV), (key, KEY_ENV)))
        return SigningIdentity(chain, private, False, f"{CERT_ENV}={cert}")
    folder = identity_dir()
    chain_path, key_path = folder / "chain.pem", folder / "key.pem"
    if not (chain_path.is_file() and key_path.is_file()):
        chain, private = certificate_chain("millamusic local signer", SELF_SIGNED_ORG, years=SELF_SIGNED_YEARS)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(key_path) as tmp:
            tmp.write_bytes(private)
            tmp.chmod(0o600)
        with atomic_path(chain_path) as tmp:
            tmp.write_bytes(chain)
    return SigningIdentity(chain_path.read_bytes(), key_path.read_bytes(), True, f"self-signed, {folder}")


def _read_pem(path: Path, name: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ExportError(f"{name}={path}: cannot read it ({error.strerror}); point it at a PEM file") from None
    if b"-----BEGIN" not in data:
        raise ExportError(f"{name}={path}: not a PEM file; export the certificate chain / PKCS#8 key as PEM")
    return data


def certificate_chain(common_name: str, organisation: str, *, years: int = 1) -> tuple[bytes, bytes]:
    """(chain PEM: signing certificate + root, PKCS#8 key PEM) of a new EC P-256 root CA and a
    signing certificate under it, valid from a day ago for `years`. Used for the local identity
    and by tests for their throwaway chains."""
    from cryptography import x509  # cryptography: ~0.1 s, only when an identity is made
    from cryptography.hazmat.primitives import hashes, serialization  # cryptography: as above
    from cryptography.hazmat.primitives.asymmetric import ec  # cryptography: as above
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # cryptography: as above

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation)])

    now = dt.datetime.now(dt.timezone.utc)
    start, end = now - dt.timedelta(days=1), now + dt.timedelta(days=365 * years)
    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    usage = {"content_commitment": False, "key_encipherment": False, "data_encipherment": False,
             "key_agreement": False, "encipher_only": False, "decipher_only": False}
    root = (x509.CertificateBuilder().subject_name(name(f"{common_name} root")).issuer_name(name(f"{common_name} root"))
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **usage),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name(common_name)).issuer_name(root.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    chain = leaf.public_bytes(serialization.Encoding.PEM) + root.public_bytes(serialization.Encoding.PEM)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return chain, private
