#!/bin/sh
# The DNS server of the DNS-01 tests: BIND authoritative for $ZONE, accepting dynamic updates of TXT
# records signed with the TSIG key $TSIG_NAME / $TSIG_SECRET ($TSIG_ALGORITHM), as a home router or
# a self-hosted BIND does for certbot's rfc2136 plugin. No recursion; the zone starts empty but for
# its SOA and NS.
set -eu
: "${ZONE:?ZONE is not set}"
: "${TSIG_NAME:?TSIG_NAME is not set}"
: "${TSIG_SECRET:?TSIG_SECRET is not set}"
algorithm=$(echo "${TSIG_ALGORITHM:-hmac-sha512}" | tr 'A-Z' 'a-z')
mkdir -p /var/lib/bind /var/cache/bind /run/named
cat >/etc/bind/named.conf <<CONF
options {
    directory "/var/cache/bind";
    pid-file "/run/named/named.pid";
    listen-on { any; };
    listen-on-v6 { none; };
    recursion no;
    allow-query { any; };
    dnssec-validation no;
};
key "$TSIG_NAME" {
    algorithm $algorithm;
    secret "$TSIG_SECRET";
};
zone "$ZONE" {
    type primary;
    file "/var/lib/bind/$ZONE.zone";
    update-policy { grant "$TSIG_NAME" zonesub TXT; };
};
CONF
cat >"/var/lib/bind/$ZONE.zone" <<ZONEFILE
\$TTL 5
@   IN SOA ns1.$ZONE. hostmaster.$ZONE. ( 1 60 60 600 5 )
@   IN NS  ns1.$ZONE.
ns1 IN A   192.0.2.53
ZONEFILE
rm -f "/var/lib/bind/$ZONE.zone.jnl"
exec named -g -c /etc/bind/named.conf
