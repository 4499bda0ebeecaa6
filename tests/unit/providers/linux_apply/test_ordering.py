"""Forwarding switches are written before the sysctl keys the kernel resets with them."""

from __future__ import annotations

from controller.providers.linux.operations import Target, ordered, resets_others


def sysctl(key: str) -> Target:
    return Target("Sysctl", key, key, "update", {"key": key, "value": "0"})


def test_ip_forward_goes_before_the_keys_it_resets() -> None:
    targets = [
        sysctl("net.ipv4.conf.all.accept_redirects"),
        sysctl("net.ipv4.ip_forward"),
        sysctl("net.ipv4.tcp_syncookies"),
        sysctl("net.ipv6.conf.all.forwarding"),
    ]
    keys = [t.key for t in ordered(targets)]
    assert keys[:2] == ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]
    assert keys[2:] == ["net.ipv4.conf.all.accept_redirects", "net.ipv4.tcp_syncookies"]


def test_only_forwarding_switches_reset_others() -> None:
    assert resets_others("Sysctl", "net/ipv4/ip_forward")
    assert not resets_others("Sysctl", "net.ipv4.conf.all.accept_redirects")
    assert not resets_others("File", "/etc/ip_forward")
