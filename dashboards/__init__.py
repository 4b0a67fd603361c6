"""certloop's Grafana dashboards, written with grafanalib and rendered to `dashboards/generated/`.

`dashboards.style` holds the house style; each dashboard is one module with `SPEC` and `build()`;
`python -m dashboards.build` writes the JSON and Grafana provisioning files.
"""
