# Shared by the disk benchmarks (sourced, not run): the same QEMU TCG
# microvm guest for every server compared, so only the server differs.
#
#   blk_guest SOCK LIMIT SCRIPT   boots kiln's default guest ($G) with a
#                                 vhost-user-blk disk on SOCK, runs the
#                                 shell SCRIPT in it once /init is up (it
#                                 prints "RESULT NAME START END" lines, in
#                                 /proc/uptime seconds, and reboots), and
#                                 prints "NAME SECONDS" for each; QEMU is
#                                 killed after LIMIT seconds. Uses $T.
# shellcheck shell=bash
blk_guest() {
	local sock=$1 limit=$2 script=$3 fifo=$T/in out=$T/out q
	rm -f "$fifo"
	mkfifo "$fifo"
	timeout "$limit" qemu-system-x86_64 -M microvm,acpi=off,memory-backend=mem,x-option-roms=off,rtc=on,isa-serial=on \
		-global virtio-mmio.force-legacy=false -accel tcg -cpu max -m 256 \
		-object memory-backend-memfd,id=mem,size=256M,share=on \
		-nodefaults -no-user-config -nographic -no-reboot -serial stdio -device i8042 \
		-chardev socket,id=c0,path="$sock" -device vhost-user-blk,chardev=c0 \
		-kernel "$G/vmlinux" -initrd "$G/initramfs.cpio.gz" -append "console=ttyS0 reboot=k panic=-1 quiet" \
		<"$fifo" >"$out" 2>&1 &
	q=$!
	exec 8>"$fifo"
	for _ in $(seq 600); do grep -q "kiln-guest: init ready" "$out" && break; sleep 0.1; done
	sleep 0.3
	echo "$script" >&8
	wait "$q"
	exec 8>&-
	tr -d '\r' <"$out" | awk '/^RESULT/ {printf "%s %.3f\n", $2, $4 - $3}'
}
