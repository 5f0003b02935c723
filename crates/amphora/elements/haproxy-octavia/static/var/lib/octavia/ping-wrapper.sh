#!/bin/bash
# Ping health monitor: haproxy's external-check passes the member in
# HAPROXY_SERVER_ADDR; one echo request, IPv4 or IPv6.
if [[ "$HAPROXY_SERVER_ADDR" =~ ":" ]]; then
    exec ping -6 -q -n -w 1 -c 1 "$HAPROXY_SERVER_ADDR" > /dev/null 2>&1
else
    exec ping -q -n -w 1 -c 1 "$HAPROXY_SERVER_ADDR" > /dev/null 2>&1
fi
