"""Password hashes in text that came from a node: masked before anyone sees it.

A node's error output can quote its own files (nft echoes the lines of an included file,
a failed command prints the line it choked on), and a shadow line among them is a secret
anyone can brute-force offline. Whatever a node says reaches plans, pull-request
comments, reports and the journal only through :func:`mask_hashes`.
"""

from __future__ import annotations

import re

MASK = "***"  # as controller.store.redact.MASK: a masked value reads the same everywhere

# crypt(3) hashes: $1$ md5, $5$/$6$ sha-crypt, $2a$/$2b$/$2y$ bcrypt, $y$/$gy$ yescrypt,
# $7$ scrypt, $sha1$, $md5$; and the PHC/passlib ones applications keep in their files:
# $argon2id$/$argon2i$/$argon2d$, $pbkdf2$ and $pbkdf2-sha256$ (any digest), $scrypt$,
# $sha256$/$sha512$, $bcrypt-sha256$. The rest of the hash is its parameters (v=19$m=...,
# t=3,p=4), salt and digest, in crypt's or standard base64.
HASH = re.compile(
    r"\$(?:1|2[abxy]?|5|6|7|y|gy|sha1|md5|sha256|sha512|argon2(?:id|i|d)|pbkdf2(?:-[a-z0-9]+)?"
    r"|scrypt|bcrypt-sha256)\$[./A-Za-z0-9$,=+-]{8,}"
)


def mask_hashes(text: str) -> str:
    return HASH.sub(MASK, text)
