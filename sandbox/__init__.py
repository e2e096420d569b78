"""The drill environment: a small simulated estate that reacts to what suture does.

Real Prometheus scrapes the estate's exporters, real Alertmanager routes its alert
rules to the ingress, the kmock Kubernetes emulator holds its Deployments (the
sandbox plays the Deployment controller), and moto holds its AWS accounts. Time is
compressed (1 s scrapes, short ``for:``), never faked inside suture itself.
"""
