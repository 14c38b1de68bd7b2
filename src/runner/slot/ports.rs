//! Probed port blocks: an instance's `TREEFARM_PORT` … `+ port_stride - 1`
//! must be free on loopback when it starts. A slot whose own block is taken
//! (another program, a leftover dev server) gets the next free spare block
//! above every slot's own block; blocks handed out by this process are
//! claimed until the instance ends, so two instances never share one.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

static CLAIMED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// A port block held for one instance; released on drop.
#[derive(Debug)]
pub struct PortBlock {
    pub start: u32,
    pub size: u32,
    /// The slot's own block and its first taken port, when it had to move.
    pub moved_from: Option<(u32, u32)>,
}

impl Drop for PortBlock {
    fn drop(&mut self) {
        CLAIMED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.start);
    }
}

/// The first port of `start..start+size` that cannot be bound on loopback.
fn first_taken(start: u32, size: u32) -> Option<u32> {
    (start..start + size).find(|&p| {
        u16::try_from(p).map_or(true, |p| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_err()
        })
    })
}

/// Claims `own` (a block of `size` ports) or, when a port in it is taken or
/// it is claimed, the first free block at `spare_from + k * size`. `None`
/// when no block below 65536 is free.
pub fn claim(own: u32, size: u32, spare_from: u32) -> Option<PortBlock> {
    let size = size.max(1);
    let mut claimed = CLAIMED.lock().unwrap_or_else(|p| p.into_inner());
    let own_taken = if claimed.contains(&own) {
        Some(own)
    } else {
        first_taken(own, size)
    };
    let Some(taken) = own_taken else {
        claimed.insert(own);
        return Some(PortBlock {
            start: own,
            size,
            moved_from: None,
        });
    };
    let mut start = spare_from.max(own + size);
    while start + size - 1 <= u32::from(u16::MAX) {
        if !claimed.contains(&start) && first_taken(start, size).is_none() {
            claimed.insert(start);
            return Some(PortBlock {
                start,
                size,
                moved_from: Some((own, taken)),
            });
        }
        start += size;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_moves_the_block_and_claims_are_exclusive() {
        // An ephemeral port the OS gave us is held for the whole test.
        let held = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = u32::from(held.local_addr().unwrap().port());
        let own = port - 1;
        let moved = claim(own, 3, own + 300).expect("a free block");
        assert_eq!(moved.moved_from, Some((own, port)));
        assert!(moved.start >= own + 300);
        let again = claim(moved.start, 3, own + 300).expect("another block");
        assert_ne!(again.start, moved.start, "claimed blocks are not shared");
        drop(held);
    }
}
