#!/usr/bin/env bash
# Start the database servers the test suite expects on loopback, on a CI runner that has none
# (GitHub Actions and GitLab CI jobs in a debian:bookworm container, as root). Our own machines start
# them before a session, so .ci/run does not call this. The tests expect PostgreSQL on
# 127.0.0.1:5432 (user postgres, trust) and MariaDB on 127.0.0.1:3306 (root, empty password).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=120 postgresql mariadb-server >/dev/null

cluster=$(pg_lsclusters --no-header | awk 'NR==1 {print $1 " " $2}')
read -r version name <<<"$cluster"
hba=/etc/postgresql/$version/$name/pg_hba.conf
printf 'local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n' >"$hba"
pg_ctlcluster "$version" "$name" start

service mariadb start
mysql -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); FLUSH PRIVILEGES;"

pg_isready -h 127.0.0.1 -p 5432
mysql -h 127.0.0.1 -uroot -e 'SELECT 1' >/dev/null
echo "PostgreSQL and MariaDB are up on 127.0.0.1"
