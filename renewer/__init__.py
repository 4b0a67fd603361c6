"""certloop renewer: renew certificates on Alertmanager webhooks, install safely, verify, roll back."""
