s|^#OSERBIN=.*|#OSERBIN=/usr/sbin/openser|
s|^#CFGFILE=.*|#CFGFILE=/etc/openser/openser.cfg|
s|^#PID_FILE=.*|PID_FILE=/run/openser/openser.pid|
s|/usr/local/etc/openser|/etc/openser|g
