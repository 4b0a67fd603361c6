// Alerts about the hosts certloop runs on, from node_exporter's metrics: a full disk stops renewals from
// writing keys, certificates and the job store; a wrong clock makes valid certificates look expired
// (or not yet valid) to everyone who checks them against it. Self-contained: the knobs this group adds
// to _config live here, next to the alerts that use them.
local alert = import '../lib/alert.libsonnet';
local duration = import '../lib/duration.libsonnet';

{
  _config+:: {
    // Selects node_exporter's series. compose, the systemd install docs and the Kubernetes prod overlay
    // scrape it as job="node"; kube-prometheus calls it 'job="node-exporter"'.
    nodeExporterSelector: 'job="node"',

    host: {
      // File systems worth alerting on: real disks, not the kernel's and the runtime's pseudo ones.
      filesystemSelector: 'fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs|fuse.lxcfs|autofs"',
      // The mount points that hold the renewer's data_dir (job store, sealed keys, ACME accounts) and
      // the certificate outputs. These get their own, more severe alert: a renewal that cannot write
      // there fails. Change it to your layout, e.g. 'mountpoint=~"/|/var|/etc/nginx/tls"'.
      certloopMountpoints: 'mountpoint=~"/|/var|/var/lib|/var/lib/certloop.*|/etc|/etc/nginx/tls|/srv.*"',
      // Alert when less than this fraction is free, or when the trend of the last
      // filesystemTrendWindow says it runs out within filesystemPredictAhead while below
      // filesystemPredictBelow free (a steadily growing log on a half-empty disk is not yet news).
      filesystemFreeRatio: 0.10,
      filesystemPredictBelow: 0.40,
      filesystemTrendWindow: '6h',
      filesystemPredictAhead: '24h',
      // Available memory below this fraction of the total.
      memoryAvailableRatio: 0.10,
      // 15-minute load average per CPU above this.
      loadPerCpu: 2,
      // |clock offset| above this many seconds. certloop's own timing tolerates seconds, but TLS peers,
      // OCSP and ACME servers compare against correct time; 50ms is what NTP keeps easily.
      clockOffsetSeconds: 0.05,
    },

    severities+: {
      hostDown: 'major',
      hostFilesystemAlmostFull: 'warning',
      hostCertloopFilesystemAlmostFull: 'major',
      hostMemoryLow: 'warning',
      hostLoadHigh: 'warning',
      hostClockSkew: 'major',
      hostClockNotSynchronising: 'warning',
    },

    'for'+: {
      hostDown: '5m',
      hostFilesystemAlmostFull: '30m',
      hostCertloopFilesystemAlmostFull: '15m',
      hostMemoryLow: '15m',
      hostLoadHigh: '30m',
      hostClockSkew: '10m',
      hostClockNotSynchronising: '10m',
    },
  },

  local config = $._config,
  local pct(ratio) = std.toString(ratio * 100) + '%',
  local h = config.host,
  local node = config.nodeExporterSelector,
  local fs = '%s,%s' % [node, h.filesystemSelector],

  // Free ratio, for the file systems `extra` selects, only where writable.
  local almostFull(extra) =
    |||
      (
        node_filesystem_avail_bytes{%(fs)s,%(extra)s} / node_filesystem_size_bytes{%(fs)s,%(extra)s} < %(free)g
        or
        (
          node_filesystem_avail_bytes{%(fs)s,%(extra)s} / node_filesystem_size_bytes{%(fs)s,%(extra)s} < %(below)g
          and
          predict_linear(node_filesystem_avail_bytes{%(fs)s,%(extra)s}[%(window)s], %(ahead)s) < 0
        )
      )
      and
      node_filesystem_readonly{%(fs)s,%(extra)s} == 0
    ||| % {
      fs: fs,
      extra: extra,
      free: h.filesystemFreeRatio,
      below: h.filesystemPredictBelow,
      window: h.filesystemTrendWindow,
      ahead: duration.seconds(h.filesystemPredictAhead),
    },

  // The certloop mount points as the general alert's exclusion: the same file system alerts once.
  local negated = std.strReplace(std.strReplace(h.certloopMountpoints, '=~', '!~'), 'mountpoint="', 'mountpoint!="'),

  local freeText = ('{{ $value | humanizePercentage }} free: less than %s, or less than %s and on course to run out within %s at the rate of the last %s.'
                    % [std.toString(h.filesystemFreeRatio * 100) + '%', std.toString(h.filesystemPredictBelow * 100) + '%',
                       h.filesystemPredictAhead, h.filesystemTrendWindow]),

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'certloop-host',
        rules: [
          alert.new(
            config,
            'CertloopHostDown',
            'hostDown',
            'up{%s} == 0' % node,
            'Host {{ $labels.instance }} is not reporting (node_exporter down)',
            ('Prometheus cannot scrape node_exporter on {{ $labels.instance }} (job {{ $labels.job }}). '
             + 'Either the host is down, with every certloop process and served certificate on it, or '
             + 'node_exporter is: then disk, memory and clock are unwatched there.'),
          ) + alert.zh(
            '主机 {{ $labels.instance }} 无数据上报（node_exporter 不可用）',
            ('Prometheus 无法抓取主机 {{ $labels.instance }} 上的 node_exporter（任务 {{ $labels.job }}）。'
             + '要么主机已宕机，其上所有 certloop 进程和所服务的证书随之不可用；要么只是 node_exporter 停止，'
             + '该主机的磁盘、内存和时钟无人监测。'),
          ),
          alert.new(
            config,
            'CertloopHostCertloopFilesystemAlmostFull',
            'hostCertloopFilesystemAlmostFull',
            std.stripChars(almostFull(h.certloopMountpoints), "\n"),
            'File system {{ $labels.mountpoint }} on {{ $labels.instance }}, which holds certloop data or certificates, is almost full',
            ('{{ $labels.mountpoint }} ({{ $labels.device }}) on {{ $labels.instance }} has '
             + freeText + " It holds the renewer's data_dir or certificate outputs: a renewal that cannot write "
             + 'its key, certificate or job record there fails, and the old certificate stays until it expires.'),
          ) + alert.zh(
            '主机 {{ $labels.instance }} 上存放 certloop 数据或证书的文件系统 {{ $labels.mountpoint }} 即将写满',
            ('{{ $labels.instance }} 上的 {{ $labels.mountpoint }}（{{ $labels.device }}）剩余 '
             + '{{ $value | humanizePercentage }}：低于 %s，或低于 %s 且按最近 %s 的速度将在 %s 内写满。'
               % [pct(h.filesystemFreeRatio), pct(h.filesystemPredictBelow), h.filesystemTrendWindow, h.filesystemPredictAhead]
             + '续期服务的 data_dir 或证书输出目录在其上：写不进私钥、证书或任务记录时续期失败，旧证书保留直到过期。'),
          ),
          alert.new(
            config,
            'CertloopHostFilesystemAlmostFull',
            'hostFilesystemAlmostFull',
            std.stripChars(almostFull(negated), "\n"),
            'File system {{ $labels.mountpoint }} on {{ $labels.instance }} is almost full',
            ('{{ $labels.mountpoint }} ({{ $labels.device }}) on {{ $labels.instance }} has '
             + freeText),
          ) + alert.zh(
            '主机 {{ $labels.instance }} 上的文件系统 {{ $labels.mountpoint }} 即将写满',
            ('{{ $labels.instance }} 上的 {{ $labels.mountpoint }}（{{ $labels.device }}）剩余 '
             + '{{ $value | humanizePercentage }}：低于 %s，或低于 %s 且按最近 %s 的速度将在 %s 内写满。'
               % [pct(h.filesystemFreeRatio), pct(h.filesystemPredictBelow), h.filesystemTrendWindow, h.filesystemPredictAhead]),
          ),
          alert.new(
            config,
            'CertloopHostMemoryLow',
            'hostMemoryLow',
            'node_memory_MemAvailable_bytes{%(n)s} / node_memory_MemTotal_bytes{%(n)s} < %(r)g' % {
              n: node,
              r: h.memoryAvailableRatio,
            },
            'Host {{ $labels.instance }} is low on memory ({{ $value | humanizePercentage }} available)',
            ('Only {{ $value | humanizePercentage }} of the memory of {{ $labels.instance }} is available. '
             + 'The kernel will kill a process soon; a renewer killed mid-install rolls back on restart, '
             + 'an exporter killed stops observing.'),
          ) + alert.zh(
            '主机 {{ $labels.instance }} 内存不足（可用 {{ $value | humanizePercentage }}）',
            ('{{ $labels.instance }} 仅有 {{ $value | humanizePercentage }} 的内存可用，内核很快会终止进程；'
             + '安装中被终止的续期服务会在重启后回滚，被终止的导出器停止监测。'),
          ),
          alert.new(
            config,
            'CertloopHostLoadHigh',
            'hostLoadHigh',
            ('node_load15{%(n)s} / on (job, instance) count by (job, instance) (node_cpu_seconds_total{%(n)s,mode="idle"}) > %(l)g'
             % { n: node, l: h.loadPerCpu }),
            'Host {{ $labels.instance }} is overloaded (load {{ $value | humanize }} per CPU)',
            ('The 15-minute load average of {{ $labels.instance }} is {{ $value | humanize }} per CPU. '
             + 'Probes time out and sweeps fall behind on an overloaded host: expect probe failures '
             + 'that are not the endpoints\' fault.'),
          ) + alert.zh(
            '主机 {{ $labels.instance }} 负载过高（每 CPU {{ $value | humanize }}）',
            ('{{ $labels.instance }} 的 15 分钟平均负载为每 CPU {{ $value | humanize }}。'
             + '过载主机上探测会超时、巡检会落后：出现的探测失败未必是端点的问题。'),
          ),
          alert.new(
            config,
            'CertloopHostClockSkew',
            'hostClockSkew',
            'abs(node_timex_offset_seconds{%s}) > %g' % [node, h.clockOffsetSeconds],
            'The clock of {{ $labels.instance }} is off by {{ $value | humanizeDuration }}',
            ('The system clock of {{ $labels.instance }} is {{ $value | humanizeDuration }} away from its '
             + 'time source. Certificate validity is judged against this clock: a wrong clock makes a valid '
             + 'certificate look expired or not yet valid, and misplaces renewal times.'),
          ) + alert.zh(
            '主机 {{ $labels.instance }} 的时钟偏差 {{ $value | humanizeDuration }}',
            ('{{ $labels.instance }} 的系统时钟与其时间源相差 {{ $value | humanizeDuration }}。'
             + '证书有效期以此时钟判断：时钟错误会让有效证书显得已过期或尚未生效，续期时间也会算错。'),
          ),
          alert.new(
            config,
            'CertloopHostClockNotSynchronising',
            'hostClockNotSynchronising',
            'min_over_time(node_timex_sync_status{%s}[5m]) == 0' % node,
            'The clock of {{ $labels.instance }} is not synchronised',
            ('The kernel reports that the clock of {{ $labels.instance }} is not synchronised to a time '
             + 'source (NTP or PTP). It drifts from here on; certificate validity checks depend on it.'),
          ) + alert.zh(
            '主机 {{ $labels.instance }} 的时钟未同步',
            ('内核报告 {{ $labels.instance }} 的时钟未与任何时间源（NTP 或 PTP）同步，将从此开始漂移；'
             + '证书有效期的判断依赖于它。'),
          ),
        ],
      },
    ],
  },
}
