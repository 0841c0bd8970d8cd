#!/bin/busybox sh
# /init of the Linux guests' initramfs (built by xtask, see docs/linux-guests.md): Debian's
# static busybox and this script. It prints markers the harness waits for, then runs a shell on
# the console, or the test named by `hvtest=` on the kernel command line.
#
#   HV-LINUX-BOOT <name>      first thing, at every boot (a reboot prints it again)
#   HV-LINUX-READY <name>     userland is up (proc, sys and dev mounted)
#   HV-LINUX-CPUS <n>         CPUs online
#
# <name> is `hvname=` from the command line, else `linux`. Tests (`hvtest=`):
#   poweroff    poweroff -f                 (PSCI SYSTEM_OFF: the hypervisor stops this VM)
#   reboot      reboot -f at every boot     (PSCI SYSTEM_RESET: the hypervisor restarts it)
#   sleep       HV-SLEEP-START <uptime>, sleep 1, HV-SLEEP-END <uptime>, then the shell
#   flood       HV-FLOOD-START, then HV-FLOOD <n> lines as fast as it can, forever
#   heartbeat   HV-ALIVE <n> <uptime> every second, forever
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp /root
/bin/busybox mount -t proc proc /proc
# With /proc mounted, busybox finds its own path and links every applet to it.
/bin/busybox --install -s

mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

name=linux
hvtest=
for word in $(cat /proc/cmdline); do
    case "$word" in
    hvname=*) name="${word#hvname=}" ;;
    hvtest=*) hvtest="${word#hvtest=}" ;;
    esac
done
hostname "$name"

uptime_s() {
    read -r up _ </proc/uptime
    echo "$up"
}

echo "HV-LINUX-BOOT $name"
echo "HV-LINUX-READY $name"
cpus=$(nproc 2>/dev/null || grep -c '^processor' /proc/cpuinfo)
echo "HV-LINUX-CPUS $cpus"

case "$hvtest" in
"") ;;
poweroff)
    echo "HV-POWEROFF"
    poweroff -f
    ;;
reboot)
    echo "HV-REBOOT"
    reboot -f
    ;;
sleep)
    echo "HV-SLEEP-START $(uptime_s)"
    sleep 1
    echo "HV-SLEEP-END $(uptime_s)"
    ;;
flood)
    echo "HV-FLOOD-START"
    i=0
    while :; do
        echo "HV-FLOOD $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        i=$((i + 1))
    done
    ;;
heartbeat)
    i=0
    while :; do
        echo "HV-ALIVE $i $(uptime_s)"
        i=$((i + 1))
        sleep 1
    done
    ;;
*) echo "HV-UNKNOWN-TEST $hvtest" ;;
esac

echo "shell on the console (poweroff -f ends this VM, reboot -f restarts it)"
while :; do
    setsid cttyhack sh
    sleep 1
done
