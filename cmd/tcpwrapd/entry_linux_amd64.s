// Code in this file runs before the Go runtime, so it is assembly.

#include "textflag.h"

// vszEntry is the program's entry point when linked with
// -ldflags=-E=main.vszEntry (see entry_linux_amd64.go). Before the Go
// runtime reserves its address space, it reads RLIMIT_AS; below
// service.MinAddressSpace (1 GiB) it writes a clear message to fd 2 and
// exits with status 89 (Dovecot's FATAL_DEFAULT) instead of letting the
// runtime die with "failed to reserve page summary memory". Otherwise it
// jumps to the runtime's usual entry point with the stack untouched.
TEXT main·vszEntry(SB),NOSPLIT|NOFRAME,$0
	SUBQ	$64, SP
	MOVQ	$97, AX          // SYS_getrlimit
	MOVQ	$9, DI           // RLIMIT_AS
	MOVQ	SP, SI
	SYSCALL
	CMPQ	AX, $0
	JNE	ok
	MOVQ	0(SP), R8        // rlim_cur
	MOVQ	$0x40000000, R9  // service.MinAddressSpace
	CMPQ	R8, R9
	JAE	ok
	MOVQ	$1, AX           // SYS_write
	MOVQ	$2, DI
	LEAQ	vszPrefix<>(SB), SI
	MOVQ	$35, DX
	SYSCALL
	SHRQ	$20, R8          // MiB, in decimal, built backwards at 8(SP)..63(SP)
	LEAQ	64(SP), R10
	MOVQ	R8, AX
	MOVQ	$10, R9
digit:
	XORQ	DX, DX
	DIVQ	R9
	ADDQ	$48, DX
	DECQ	R10
	MOVB	DX, 0(R10)
	CMPQ	AX, $0
	JNE	digit
	MOVQ	$1, AX
	MOVQ	$2, DI
	MOVQ	R10, SI
	LEAQ	64(SP), DX
	SUBQ	R10, DX
	SYSCALL
	MOVQ	$1, AX
	MOVQ	$2, DI
	LEAQ	vszSuffix<>(SB), SI
	MOVQ	$125, DX
	SYSCALL
	MOVQ	$231, AX         // SYS_exit_group
	MOVQ	$89, DI
	SYSCALL
ok:
	ADDQ	$64, SP
	JMP	_rt0_amd64_linux(SB)

DATA	vszPrefix<>+0(SB)/8, $"tcpwrapd"
DATA	vszPrefix<>+8(SB)/8, $": vsz_li"
DATA	vszPrefix<>+16(SB)/8, $"mit (RLI"
DATA	vszPrefix<>+24(SB)/8, $"MIT_AS) "
DATA	vszPrefix<>+32(SB)/3, $"of "
GLOBL	vszPrefix<>(SB), RODATA|NOPTR, $35

DATA	vszSuffix<>+0(SB)/8, $" MiB is "
DATA	vszSuffix<>+8(SB)/8, $"too smal"
DATA	vszSuffix<>+16(SB)/8, $"l for a "
DATA	vszSuffix<>+24(SB)/8, $"Go progr"
DATA	vszSuffix<>+32(SB)/8, $"am, whic"
DATA	vszSuffix<>+40(SB)/8, $"h needs "
DATA	vszSuffix<>+48(SB)/8, $"at least"
DATA	vszSuffix<>+56(SB)/8, $" 1024 Mi"
DATA	vszSuffix<>+64(SB)/8, $"B: set v"
DATA	vszSuffix<>+72(SB)/8, $"sz_limit"
DATA	vszSuffix<>+80(SB)/8, $" = 1G (o"
DATA	vszSuffix<>+88(SB)/8, $"r 0 for "
DATA	vszSuffix<>+96(SB)/8, $"no limit"
DATA	vszSuffix<>+104(SB)/8, $") in ser"
DATA	vszSuffix<>+112(SB)/8, $"vice tcp"
DATA	vszSuffix<>+120(SB)/5, $"wrap\n"
GLOBL	vszSuffix<>(SB), RODATA|NOPTR, $125
