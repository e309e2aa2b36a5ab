# nginx proxying to http://web, resolved at each request by nginx's own `resolver` (the server resolv.conf names), as a compose file's nginx in front of an app does.
ns=$(/bin/busybox awk '/^nameserver/{print $2; exit}' /etc/resolv.conf)
cat > /tmp/nginx.conf <<CONF
daemon off; master_process off; worker_processes 1; pid /tmp/nginx.pid; error_log stderr;
events {}
http {
    access_log off;
    client_body_temp_path /tmp; proxy_temp_path /tmp; fastcgi_temp_path /tmp; uwsgi_temp_path /tmp; scgi_temp_path /tmp;
    resolver $ns valid=1s;
    server { listen 8080; location / { set \$up http://web; proxy_pass \$up; } }
}
CONF
exec /usr/sbin/nginx -e stderr -c /tmp/nginx.conf
