#!/bin/bash
# Records a Linux oracle fixture: boots Debian's Linux 6.1 on q35 + intel-iommu with
# extra QEMU arguments and writes, to stdout, Linux's IOMMU groups and every PCI
# function's configuration space as Linux reads it through sysfs.
#
# usage: record.sh "<QEMU arguments>" > fixtures/NAME.txt
#
# It reuses the kernel and busybox that /work/shared/tools/linux-groups downloads
# (LINUX_REF_DIR, default /tmp/linux-ref); run that script once first if the
# directory is empty. Its own initrd lives in $LINUX_REF_DIR/oracle-dump so the
# shared script's files stay untouched.
#
# Output format (see README.md):
#   qemu <arguments>
#   kernel <uname -r>
#   group N BB:DD.F VENDOR:DEVICE class=CLASS      (the shared script's format)
#   root SSSS:BB PATH                              (each root bus, in ACPI namespace order)
#   config BB:DD.F SIZE                            (then the non-zero rows)
#   OFFSET HEX                                      32 bytes a row, offset in hex
set -euo pipefail
args=${1:?usage: record.sh \"<QEMU arguments>\"}
W=${LINUX_REF_DIR:-/tmp/linux-ref}
if [ ! -f "$W/vmlinuz" ] || [ ! -x "$W/root/bin/busybox" ]; then
  echo "record.sh: $W lacks vmlinuz or busybox; run /work/shared/tools/linux-groups once" >&2
  exit 2
fi
D=$W/oracle-dump
if [ ! -f "$D/initrd.gz" ] || [ "$0" -nt "$D/initrd.gz" ]; then
  rm -rf "$D" && mkdir -p "$D/root/bin" "$D/root/proc" "$D/root/sys" "$D/root/dev"
  cp "$W/root/bin/busybox" "$D/root/bin/"
  cat > "$D/root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "=== ORACLE BEGIN"
echo "kernel $(uname -r)"
for g in /sys/kernel/iommu_groups/*; do
  n=$(basename $g)
  for d in $g/devices/*; do
    b=$(basename $d)
    echo "group $n ${b#0000:} $(cat $d/vendor):$(cat $d/device) class=$(cat $d/class)"
  done
done
for a in /sys/bus/acpi/devices/PNP0A0[38]:*; do
  [ -e $a/physical_node ] || continue
  r=$(basename $(readlink $a/physical_node))
  echo "root ${r#pci} $(cat $a/path)"
done
for d in /sys/bus/pci/devices/*; do
  b=$(basename $d)
  echo "config ${b#0000:} $(wc -c < $d/config)"
  od -An -Ax -tx1 -v -w32 $d/config | sed 's/^/row /'
done
echo "=== ORACLE END"
poweroff -f
INIT
  chmod +x "$D/root/init"
  (cd "$D/root" && find . | ./bin/busybox cpio -o -H newc 2>/dev/null | gzip > ../initrd.gz)
fi
out=$(timeout 180 qemu-system-x86_64 -M q35 -m 512 -smp 1 -device intel-iommu -kernel "$W/vmlinuz" \
  -initrd "$D/initrd.gz" -append "console=ttyS0 intel_iommu=on iommu=strict quiet loglevel=3" \
  -display none -serial stdio -no-reboot $args </dev/null 2>&1 | tr -d '\r' | sed -n '/=== ORACLE BEGIN/,/=== ORACLE END/p')
if ! grep -q '=== ORACLE END' <<<"$out"; then
  echo "record.sh: the guest did not finish; QEMU arguments: $args" >&2
  exit 1
fi
echo "qemu $args"
# Rows of zeros are left out; the reader fills the gaps with zeros.
awk '
  /^kernel / || /^group / || /^root / || /^config / { print; next }
  /^row / {
    off = $2; hex = ""
    for (i = 3; i <= NF; i++) hex = hex $i
    if (hex != "" && hex !~ /^0+$/) print off, hex
  }' <<<"$out"
