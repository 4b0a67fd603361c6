"""Real peers on loopback (nginx, pebble, Prometheus, Alertmanager, ...) for tests and `make demo`.

- :mod:`stack.process`: ``Process``, ``ProcessGroup``, ``free_port``, ``wait_for_port``, ``wait_until``,
  cleanup at exit; errors ``StackError`` > ``ToolMissing``, ``NotReady``.
- :mod:`stack.nginx`: ``Nginx`` (sites by SNI and listen address, http-01 webroot, real reload).
- :mod:`stack.prometheus`: ``Prometheus``, ``promtool``.
- :mod:`stack.alertmanager`: ``Alertmanager``, ``amtool``.
- :mod:`stack.pebble`: ``Pebble`` (ACME CA with a minted HTTPS identity); :mod:`stack.challtestsrv`:
  ``ChallTestSrv`` (scriptable DNS).
- :mod:`stack.receiver`: ``Receiver`` (records HTTP requests); :mod:`stack.daemons`: ``CertloopDaemon``.
"""
