"""OPNsense firewalls over their REST API: aliases, filter rules, Unbound host overrides."""

from controller.providers.opnsense import kinds as kinds
