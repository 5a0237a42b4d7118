//! The one parser of `/proc/PID/stat` (proc(5)): the process state, its parent, its thread
//! count and its start time, which the runtime uses to tell a live process from a zombie, a
//! reused pid from the process it recorded, and a multithreaded caller from a single-threaded
//! one.

/// The fields of `/proc/PID/stat` the runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3, the state letter: `R`, `S`, `D`, `Z` (zombie), `X` (dead), `T`, `t`, ...
    pub state: char,
    /// Field 4, the parent's pid (0 for a process whose parent is outside its pid namespace).
    pub ppid: i32,
    /// Field 20, the number of threads.
    pub num_threads: u64,
    /// Field 22, the start time in clock ticks since boot: with the pid, it names one process.
    pub start_time: u64,
}

impl ProcStat {
    /// Parse the text of a `/proc/PID/stat` file. The command name (field 2) is in parentheses
    /// and may hold spaces and parentheses itself: the fields after it start after the last
    /// `)`. `None` if the text is not of that shape.
    pub fn parse(text: &str) -> Option<ProcStat> {
        let rest = text.get(text.rfind(')')? + 1..)?.trim_start();
        let mut fields = rest.split_ascii_whitespace();
        // `rest` starts at field 3.
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        // Fields 5..=19 (15 fields), then field 20.
        let num_threads = fields.nth(15)?.parse().ok()?;
        // Field 21 (itrealvalue), then field 22.
        let start_time = fields.nth(1)?.parse().ok()?;
        Some(ProcStat {
            state,
            ppid,
            num_threads,
            start_time,
        })
    }

    /// Read and parse `/proc/PID/stat`; `None` if the process does not exist (or the file
    /// cannot be read).
    pub fn of(pid: i32) -> Option<ProcStat> {
        Self::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// This process's own (`/proc/self/stat`).
    pub fn of_self() -> Option<ProcStat> {
        Self::parse(&std::fs::read_to_string("/proc/self/stat").ok()?)
    }

    /// Whether the process has exited (a zombie waiting for its parent, or dead).
    pub fn is_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 108 0 0 0 1 2 0 0 \
                          20 0 3 0 987654 8478720 226 18446744073709551615 1 1 0 0 0 0 0 0 0 \
                          0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn fields_after_a_name_with_spaces_and_parentheses() {
        let st = ProcStat::parse(SAMPLE).unwrap();
        assert_eq!(st.state, 'S');
        assert_eq!(st.ppid, 1);
        assert_eq!(st.num_threads, 3);
        assert_eq!(st.start_time, 987654);
        assert!(!st.is_exited());
    }

    #[test]
    fn zombies_are_exited_and_garbage_is_none() {
        let z = SAMPLE.replace(") S 1", ") Z 1");
        assert!(ProcStat::parse(&z).unwrap().is_exited());
        assert_eq!(ProcStat::parse("4242 (x) S 1"), None);
        assert_eq!(ProcStat::parse("no parenthesis"), None);
    }

    #[test]
    fn this_process_is_itself() {
        let st = ProcStat::of_self().unwrap();
        assert!(st.num_threads >= 1);
        assert_eq!(
            ProcStat::of(std::process::id() as i32).unwrap().start_time,
            st.start_time
        );
    }
}
