//! Two segmentations of the same bytes, walked together by byte offset (two pointers) into
//! *chunks*: the shortest runs of tokens on either side that start and end on the same byte
//! boundaries. With the teacher's tokens `de|f| add` and the student's `def| a|dd`, the chunks
//! are `de f | def` (2:1) and ` add | a dd` (1:2).
//!
//! A 1:1 chunk is one teacher token spelling exactly one student token, after the same bytes:
//! the teacher's distribution at that position is a distribution over the student's next token,
//! so it labels the student position as with a shared tokenizer. An m:n chunk is labelled at its
//! first student position by chunk-level events (`align.rs`).
//!
//! [`overlay`] lays teacher tokens over a completion they do not spell exactly: the common
//! prefix and suffix keep their tokens, and what differs between them becomes one block that
//! spells nothing, so one odd span costs only the chunk around it (and teacher text the
//! completion lacks altogether costs nothing).

use std::ops::Range;

/// Teacher tokens `teacher` and student tokens `student` (index ranges) spelling the same
/// bytes; `meets` is false for the last chunk when the two sides spell different totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub teacher: Range<usize>,
    pub student: Range<usize>,
    pub meets: bool,
}

impl Chunk {
    pub fn is_one_to_one(&self) -> bool {
        self.meets && self.teacher.len() == 1 && self.student.len() == 1
    }
}

/// The chunks of two segmentations given by their tokens' byte lengths, in order; together
/// they cover every token of both sides. Zero-length tokens join the chunk they fall in (which
/// is then not 1:1).
pub fn walk(teacher_lens: &[usize], student_lens: &[usize]) -> Vec<Chunk> {
    let (nt, ns) = (teacher_lens.len(), student_lens.len());
    let mut out = Vec::with_capacity(ns);
    let (mut t, mut s) = (0, 0);
    let (mut t_end, mut s_end) = (0usize, 0usize);
    while t < nt || s < ns {
        let (t_start, s_start) = (t, s);
        // A chunk takes at least one token of each side that has one left, then whichever side
        // is behind until the two ends meet.
        if t < nt {
            t_end += teacher_lens[t];
            t += 1;
        }
        if s < ns {
            s_end += student_lens[s];
            s += 1;
        }
        let meets = loop {
            // Zero-length tokens at the boundary belong to this chunk.
            while t < nt && teacher_lens[t] == 0 {
                t += 1;
            }
            while s < ns && student_lens[s] == 0 {
                s += 1;
            }
            if t_end == s_end {
                break true;
            }
            if t_end < s_end && t < nt {
                t_end += teacher_lens[t];
                t += 1;
            } else if s_end < t_end && s < ns {
                s_end += student_lens[s];
                s += 1;
            } else {
                // One side ran out: the totals differ. What is left is one unaligned chunk.
                t = nt;
                s = ns;
                break false;
            }
        };
        out.push(Chunk { teacher: t_start..t, student: s_start..s, meets });
    }
    out
}

/// Teacher tokens laid over a completion: entry `i` spans `lens[i]` completion bytes and stands
/// for teacher positions `teacher_of[i]`; `spells[i]` is false for the one block where the
/// teacher's bytes differ from the completion's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    pub lens: Vec<usize>,
    pub teacher_of: Vec<Range<usize>>,
    pub spells: Vec<bool>,
}

/// The teacher's tokens (their bytes, in order) over `completion` (module docs). `None` when
/// they share no token's worth of prefix or suffix with it: nothing of theirs can be used.
pub fn overlay<'a>(tokens: impl ExactSizeIterator<Item = &'a [u8]> + Clone, completion: &[u8]) -> Option<Overlay> {
    let n = tokens.len();
    let teacher_text: Vec<u8> = tokens.clone().flatten().copied().collect();
    if teacher_text == completion {
        return Some(Overlay { lens: tokens.map(<[u8]>::len).collect(), teacher_of: (0..n).map(|p| p..p + 1).collect(), spells: vec![true; n] });
    }
    let common = teacher_text.len().min(completion.len());
    let prefix = teacher_text.iter().zip(completion).take_while(|(a, b)| a == b).count();
    let suffix = teacher_text.iter().rev().zip(completion.iter().rev()).take(common - prefix).take_while(|(a, b)| a == b).count();
    // Tokens wholly inside the common prefix, and wholly inside the common suffix.
    let lens: Vec<usize> = tokens.map(<[u8]>::len).collect();
    let (mut head, mut at) = (0, 0);
    while head < n && at + lens[head] <= prefix {
        at += lens[head];
        head += 1;
    }
    let head_bytes = at;
    let (mut tail, mut from_end) = (n, 0);
    while tail > head && from_end + lens[tail - 1] <= suffix {
        from_end += lens[tail - 1];
        tail -= 1;
    }
    if head == 0 && tail == n {
        return None;
    }
    let mut out = Overlay { lens: lens[..head].to_vec(), teacher_of: (0..head).map(|p| p..p + 1).collect(), spells: vec![true; head] };
    // A block over no completion bytes (teacher text the completion lacks, such as a trailing
    // special token) touches no student token: it is left out, and its neighbours meet.
    let block = completion.len() - head_bytes - from_end;
    if block > 0 {
        out.lens.push(block);
        out.teacher_of.push(head..tail);
        out.spells.push(false);
    }
    out.lens.extend_from_slice(&lens[tail..]);
    out.teacher_of.extend((tail..n).map(|p| p..p + 1));
    out.spells.extend(std::iter::repeat_n(true, n - tail));
    Some(out)
}

impl Overlay {
    /// The part of the overlay over completion bytes `span`: entries wholly inside keep their
    /// teacher positions; an entry cut by either end keeps only its bytes inside `span` and
    /// spells nothing (its teacher token starts or ends outside, so its distribution is not
    /// one over tokens that start where the span's do).
    pub fn crop(&self, span: Range<usize>) -> Overlay {
        let mut out = Overlay { lens: Vec::new(), teacher_of: Vec::new(), spells: Vec::new() };
        let mut at = 0usize;
        for ((&len, t), &spells) in self.lens.iter().zip(&self.teacher_of).zip(&self.spells) {
            let (start, end) = (at, at + len);
            at = end;
            let (lo, hi) = (start.max(span.start), end.min(span.end));
            if lo >= hi {
                continue;
            }
            out.lens.push(hi - lo);
            out.teacher_of.push(t.clone());
            out.spells.push(spells && lo == start && hi == end);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// For each student token, the teacher token forming a 1:1 chunk with it.
    fn one_to_one(teacher: &[usize], student: &[usize]) -> Vec<Option<u32>> {
        let mut out = vec![None; student.len()];
        for c in walk(teacher, student).into_iter().filter(Chunk::is_one_to_one) {
            out[c.student.start] = Some(c.teacher.start as u32);
        }
        out
    }

    fn lens(tokens: &[&str]) -> Vec<usize> {
        tokens.iter().map(|t| t.len()).collect()
    }

    #[test]
    fn equal_segmentations_are_all_one_to_one() {
        let t = lens(&["def", " add", "(", "a"]);
        assert_eq!(one_to_one(&t, &t), vec![Some(0), Some(1), Some(2), Some(3)]);
    }

    #[test]
    fn merged_and_split_runs_become_unlabelled_chunks_between_aligned_ones() {
        // teacher: de|f| add|(|x|y|)   student: def| a|dd|(|xy|)
        let teacher = lens(&["de", "f", " add", "(", "x", "y", ")"]);
        let student = lens(&["def", " a", "dd", "(", "xy", ")"]);
        assert_eq!(one_to_one(&teacher, &student), vec![None, None, None, Some(3), None, Some(6)]);
    }

    #[test]
    fn multi_byte_characters_split_inside_a_token_still_meet_at_the_end() {
        // "é" is two bytes: the teacher has it as one token, the student as two byte tokens.
        let teacher = vec![1, 2, 1]; // "x", "é", "y"
        let student = vec![1, 1, 1, 1]; // "x", 0xC3, 0xA9, "y"
        assert_eq!(one_to_one(&teacher, &student), vec![Some(0), None, None, Some(2)]);
    }

    #[test]
    fn zero_length_tokens_and_unequal_totals_never_label() {
        assert_eq!(one_to_one(&[3, 0, 2], &[3, 2]), vec![None, Some(2)]);
        assert_eq!(one_to_one(&[2, 2], &[2, 3]), vec![Some(0), None]);
        assert_eq!(one_to_one(&[], &[1]), vec![None]);
        assert_eq!(one_to_one(&[1], &[]), Vec::<Option<u32>>::new());
    }

    /// A 1:1 chunk is exactly a student token whose byte span is also a teacher token's: an
    /// oracle with no walk, checked on random segmentations of the same bytes.
    #[test]
    fn matches_the_same_span_oracle_on_random_segmentations() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n) as usize
        };
        for _ in 0..2000 {
            let total = 1 + next(40);
            let mut split = |max: u64| {
                let mut lens = Vec::new();
                let mut left = total;
                while left > 0 {
                    let l = (1 + next(max)).min(left);
                    lens.push(l);
                    left -= l;
                }
                lens
            };
            let (teacher, student) = (split(4), split(5));
            let spans = |lens: &[usize]| {
                lens.iter()
                    .scan(0, |at, &l| {
                        *at += l;
                        Some((*at - l, *at))
                    })
                    .collect::<Vec<_>>()
            };
            let teacher_spans = spans(&teacher);
            let want: Vec<Option<u32>> = spans(&student).iter().map(|s| teacher_spans.iter().position(|t| t == s).map(|p| p as u32)).collect();
            assert_eq!(one_to_one(&teacher, &student), want, "{teacher:?} {student:?}");
        }
    }

    #[test]
    fn chunks_cover_both_sides_in_order_and_meet_on_equal_totals() {
        let teacher = lens(&["de", "f", " add", "(", "x", "y", ")"]);
        let student = lens(&["def", " a", "dd", "(", "xy", ")"]);
        let got: Vec<(Range<usize>, Range<usize>)> = walk(&teacher, &student).into_iter().map(|c| (c.teacher, c.student)).collect();
        assert_eq!(got, vec![(0..2, 0..1), (2..3, 1..3), (3..4, 3..4), (4..6, 4..5), (6..7, 5..6)]);
        assert!(walk(&teacher, &student).iter().all(|c| c.meets));
        let last = walk(&[2, 2], &[2, 3]).pop().unwrap();
        assert_eq!((last.teacher, last.student, last.meets), (1..2, 1..2, false));
    }

    fn over(tokens: &[&str], completion: &str) -> Option<Overlay> {
        overlay(tokens.iter().map(|t| t.as_bytes()), completion.as_bytes())
    }

    #[test]
    fn an_overlay_of_tokens_that_spell_the_completion_is_the_tokens() {
        let o = over(&["def", " f", "():"], "def f():").unwrap();
        assert_eq!((o.lens, o.teacher_of, o.spells), (vec![3, 2, 3], vec![0..1, 1..2, 2..3], vec![true; 3]));
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init, reason = "a list of one teacher position range is meant")]
    fn an_overlay_keeps_the_common_prefix_and_suffix_and_blocks_what_differs() {
        // The teacher wrote "\ufffd" where the completion has "é"; its tokens around it still count.
        let o = over(&["x", " =", " \"", "\u{fffd}", "\"", "\n"], "x = \"é\"\n").unwrap();
        assert_eq!(o.lens, vec![1, 2, 2, 2, 1, 1]);
        assert_eq!(o.teacher_of, vec![0..1, 1..2, 2..3, 3..4, 4..5, 5..6]);
        assert_eq!(o.spells, vec![true, true, true, false, true, true]);
        // A special token the completion does not contain covers no completion bytes: left out.
        let o = over(&["ok", "<|im_end|>"], "ok").unwrap();
        assert_eq!((o.lens, o.teacher_of, o.spells), (vec![2], vec![0..1], vec![true]));
        // A token straddling the end of the common prefix goes into the block.
        let o = over(&["ab", "cd", "ef"], "abXdef").unwrap();
        assert_eq!((o.lens, o.teacher_of, o.spells), (vec![2, 2, 2], vec![0..1, 1..2, 2..3], vec![true, false, true]));
        assert_eq!(over(&["abc"], "xyz"), None);
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init, reason = "lists of teacher position ranges are meant")]
    fn a_cropped_overlay_keeps_whole_tokens_and_blocks_cut_ones() {
        let o = over(&["def", " f", "():", "\n"], "def f():\n").unwrap();
        // Bytes 4..7 = "f()": " f" is cut at its start, "():" at its end.
        let c = o.crop(4..7);
        assert_eq!((c.lens, c.teacher_of, c.spells), (vec![1, 2], vec![1..2, 2..3], vec![false, false]));
        // On token boundaries nothing is cut.
        let c = o.crop(3..8);
        assert_eq!((c.lens, c.teacher_of, c.spells), (vec![2, 3], vec![1..2, 2..3], vec![true, true]));
        assert_eq!(o.crop(5..5).lens, Vec::<usize>::new());
        assert_eq!(o.crop(0..9), o);
    }
}
