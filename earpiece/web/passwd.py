"""``python -m earpiece.web.passwd``: print a password hash for ``[[http.users]] password_hash``.

Reads the password twice from the terminal (or one line from standard input when it is not a
terminal) and prints ``pbkdf2_sha256$...`` (``--scrypt``: ``scrypt$...``).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from earpiece.web.auth import hash_password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m earpiece.web.passwd",
                                     description="hash a dashboard password")
    parser.add_argument("--scrypt", action="store_true", help="scrypt instead of PBKDF2-SHA256")
    args = parser.parse_args(argv)
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        print("empty password", file=sys.stderr)
        return 1
    print(hash_password(password, scheme="scrypt" if args.scrypt else "pbkdf2_sha256"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
