//! PVH entry: from 32-bit protected mode without paging to 64-bit Rust.
//!
//! QEMU's `-kernel` loader finds the entry point in the Xen ELF note
//! (`XEN_ELFNOTE_PHYS32_ENTRY`) and jumps there with `ebx` pointing at
//! `hvm_start_info`. The code below builds temporary page tables that map
//! the first GiB three ways (identity, direct map at `PHYS_OFFSET`, and the
//! kernel image at -2 GiB), enables long mode and SSE, switches to the boot
//! stack in the kernel image and calls `kernel_main`. `kernel_space::init` later
//! replaces these tables with the final ones.

use crate::stacks::KERNEL_STACK;

core::arch::global_asm!(
    r#"
    .section .note.pvh, "a"
    .p2align 2
    .long 4            /* name size: "Xen\0" */
    .long 8            /* descriptor size: a 64-bit address */
    .long 18           /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .p2align 2
    .quad pvh_start

    .section .boot.data, "aw"
    .p2align 12
boot_pml4:      .fill 4096, 1, 0
boot_pdpt_low:  .fill 4096, 1, 0
boot_pdpt_high: .fill 4096, 1, 0
boot_pd:        .fill 4096, 1, 0
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff   /* 64-bit code, ring 0 */
    .quad 0x00cf92000000ffff   /* data, ring 0 */
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .boot.text, "ax"
    .code32
    .global pvh_start
pvh_start:
    cli
    cld
    movl %ebx, %esi                      /* hvm_start_info, kept in esi */

    movl $boot_pdpt_low + 3, %eax
    movl %eax, boot_pml4                 /* identity map of the first GiB */
    movl %eax, boot_pml4 + 256 * 8       /* direct map at PHYS_OFFSET */
    movl $boot_pdpt_high + 3, %eax
    movl %eax, boot_pml4 + 511 * 8       /* kernel image at -2 GiB */
    movl $boot_pd + 3, %eax
    movl %eax, boot_pdpt_low
    movl %eax, boot_pdpt_high + 510 * 8
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax                      /* present, writable, 2 MiB */
    movl %eax, boot_pd(, %ecx, 8)
    incl %ecx
    cmpl $512, %ecx
    jne 1b

    movl %cr4, %eax
    orl $(1 << 5), %eax                  /* PAE */
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx               /* EFER */
    rdmsr
    orl $(1 << 8), %eax                  /* long mode enable */
    wrmsr
    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16) | 1), %eax   /* paging, write protect, protected mode */
    movl %eax, %cr0

    lgdt boot_gdt_pointer
    pushl $0x08
    pushl $boot64
    lret

    .code64
boot64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $boot_high, %rax
    jmp *%rax

    .section .text.boot_high, "ax"
boot_high:
    /* The top of the kernel stack is kept for trap frames; start below it. */
    leaq {stack}(%rip), %rsp
    addq ${stack_size} - {trap_area}, %rsp
    movl %esi, %edi                      /* zero-extends hvm_start_info */
    movq %cr0, %rax
    andq $~(1 << 2), %rax                /* no x87 emulation */
    orq $(1 << 1), %rax                  /* monitor coprocessor */
    movq %rax, %cr0
    movq %cr4, %rax
    orq $((1 << 9) | (1 << 10)), %rax    /* OSFXSR, OSXMMEXCPT: SSE on */
    movq %rax, %cr4
    xorl %ebp, %ebp
    call kernel_main
    ud2
    "#,
    stack = sym KERNEL_STACK,
    stack_size = const crate::stacks::KERNEL_STACK_SIZE,
    trap_area = const crate::stacks::TRAP_AREA,
    options(att_syntax)
);
