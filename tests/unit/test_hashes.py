"""Password hashes a node quotes in its output are masked, whatever their scheme."""

from __future__ import annotations

import pytest

from controller.hashes import MASK, mask_hashes

HASHES = [
    "$6$rounds=5000$saltsalt$Qm9vYmFyYmF6cXV4cXV1eGZyb2JuaWNhdGVk",
    "$y$j9T$abcdefghijklmnop$ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abc",
    "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
    # PHC and passlib schemes, in application files a definition or a command may quote
    "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
    "$argon2i$v=19$m=4096,t=3,p=1$c29tZXNhbHQ$iWh06vD8Fy27wf9npn6FXWiCX4K6pW6Ue1Bnzz07Z8A",
    "$pbkdf2-sha256$29000$N2bMWSuF0Lp3zrnXWmvt/Q$Cg2UFyLyPrdTcLJDZrKpO1QRBgd/P7kqZ1Mzcuss2Tk",
    "$pbkdf2$131000$r5VSCmGMcQ4BgHDuPWeM8Q$fi.RbQcfK29QbMnl3dBV1s6jrmw",
    "$sha512$c2FsdHNhbHQ$0123456789abcdef0123456789abcdef",
    "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4",
]


@pytest.mark.parametrize("secret", HASHES)
def test_a_quoted_hash_is_masked(secret: str) -> None:
    line = f"/etc/app/users:3: root:{secret}:19000:0"
    masked = mask_hashes(line)
    assert secret not in masked
    assert masked == f"/etc/app/users:3: root:{MASK}:19000:0"


def test_prices_and_shell_variables_are_left_alone() -> None:
    text = "costs $5 or $6 a month; echo $HOME $PATH"
    assert mask_hashes(text) == text
