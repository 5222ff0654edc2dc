//! System-call dispatch: decodes the call in the running task's registers
//! and hands it to the operation that implements it.

use capabilities::ErrorCode;
use capabilities::abi::{LOG_FRAME_MAX, Syscall};

use super::{Kernel, Machine};
use crate::task::TaskId;
use crate::usermem;

impl Kernel {
    /// Carries out the system call in the running task's saved registers.
    pub fn syscall(&mut self, m: &mut impl Machine) {
        let Some(id) = self.current else { return };
        let (number, args) = self.task(id).frame.syscall_args();
        let Some(call) = Syscall::from_number(number) else {
            self.set_result(id, Err(ErrorCode::NoSuchCall));
            return;
        };
        // `None`: the task blocked or ended; its result comes later, if ever.
        let outcome = match call {
            Syscall::LogWrite => Some(self.log_write(m, id, args[0], args[1])),
            Syscall::Exit => {
                self.exit(m, id, args[0]);
                None
            }
            Syscall::Yield => {
                let priority = self.task(id).priority;
                self.sched.enqueue(id, priority);
                self.current = None;
                Some(Ok([0; 3]))
            }
            Syscall::Send => self.send(m, id, [args[0], args[1], args[2], args[3]], false),
            Syscall::Recv => self.receive(m, id, args[0], args[1], args[2]),
            Syscall::Call => self.send(m, id, [args[0], args[1], 0, 0], true),
            Syscall::Reply => Some(self.reply(m, id, args[0], args[1])),
            Syscall::ReplyRecv => {
                // A reply to a caller that is gone must not stop the server
                // from serving the next request.
                let _ = self.reply(m, id, args[0], args[1]);
                self.receive(m, id, args[2], args[3], args[4])
            }
            Syscall::Signal => Some(self.signal(id, args[0])),
            Syscall::Wait => self.wait(m, id, args[0], args[1], args[2]),
            Syscall::CapCopy => Some(self.cap_copy(id, args[0], args[1], args[2])),
            Syscall::CapMint => Some(self.cap_mint(id, args)),
            Syscall::CapMove => Some(self.cap_move(id, args[0], args[1])),
            Syscall::CapDelete => Some(self.cap_delete(m, id, args[0])),
            Syscall::CapRevoke => Some(self.cap_revoke(m, id, args[0])),
            Syscall::CapInfo => Some(self.cap_info(id, args[0])),
            Syscall::CapSplit => Some(self.cap_split(id, args)),
            Syscall::EndpointCreate => Some(self.create_endpoint(id, args[0])),
            Syscall::NotificationCreate => Some(self.create_notification(id, args[0])),
            Syscall::NotificationBind => Some(self.bind_notification(id, args[0])),
            Syscall::FrameAlloc => Some(self.frame_alloc(m, id, args[0], args[1])),
            Syscall::Map => Some(self.map(m, id, args)),
            Syscall::Unmap => Some(self.unmap(m, id, args[0])),
            Syscall::DmaPin => Some(self.dma_pin(id, args[0], args[1], args[2])),
            Syscall::DmaUnpin => Some(self.dma_unpin(id, args[0], args[1])),
            Syscall::DmaWatch => Some(self.dma_watch(id, args[0], args[1], args[2])),
            Syscall::DmaRevoked => Some(self.dma_revoked(id, args[0])),
            Syscall::Accounting => Some(self.accounting(id, args[0], args[1])),
            Syscall::IrqBind => Some(self.irq_bind(m, id, args)),
            Syscall::IrqAck => Some(self.irq_ack(m, id, args[0])),
            Syscall::IrqAllocMsi => Some(self.irq_alloc_msi(m, id, args[0], args[1])),
            Syscall::PortIn => Some(self.port_in(m, id, args)),
            Syscall::PortOut => Some(self.port_out(m, id, args)),
            Syscall::TaskWatch => Some(self.task_watch(id, args)),
            Syscall::TaskInfo => Some(self.task_info(id, args[0])),
            Syscall::TaskKill => Some(self.task_kill(m, id, args[0])),
            Syscall::Time => Some(Ok([m.now(), 0, 0])),
            Syscall::DeviceMemoryCreate => Some(self.create_device_memory(id, args)),
            Syscall::IoApicLine => Some(self.ioapic_line(m, id, args[0], args[1])),
            Syscall::IoApicRemap => Some(self.ioapic_remap(m, id, args)),
        };
        if let Some(result) = outcome {
            self.set_result(id, result);
        }
    }

    /// [`Kernel::syscall`], then the caller, if it may resume at once: it
    /// still runs, no task became runnable or stopped being so, and no
    /// task died. The scheduler would then keep it running, so the
    /// machine skips it (and the timer, the reaper and the switch) and
    /// returns. As on the IPC fast path, timeouts that passed meanwhile
    /// are left to the timer interrupt armed for them, and so is the end
    /// of a slice shared with an equal-priority peer.
    pub fn syscall_and_continue(&mut self, m: &mut impl Machine) -> Option<TaskId> {
        let caller = self.current?;
        let changes = self.sched.changes();
        self.syscall(m);
        (self.current == Some(caller) && self.sched.changes() == changes && !self.reap_pending).then_some(caller)
    }

    fn log_write(&mut self, m: &mut impl Machine, id: TaskId, address: u64, len: u64) -> Result<[u64; 3], ErrorCode> {
        if len > LOG_FRAME_MAX as u64 {
            return Err(ErrorCode::TooLarge);
        }
        let mut buffer = [0u8; LOG_FRAME_MAX];
        let buffer = &mut buffer[..len as usize];
        usermem::copy_from_user(m, self.task(id).root, address, buffer)?;
        m.log_record(id.log_tag(), buffer);
        Ok([0; 3])
    }
}
