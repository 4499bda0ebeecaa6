"""Linux nodes over SSH: packages, files, services, users, sysctl and nftables."""

from controller.providers.linux import kinds as kinds
