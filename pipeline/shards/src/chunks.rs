//! Two segmentations of the same bytes, walked together by byte offset (two pointers) into
//! *chunks*: the shortest runs of tokens on either side that start and end on the same byte
//! boundaries. With the teacher's tokens `de|f| add` and the student's `def| a|dd`, the chunks
//! are `de f | def` (2:1) and ` add | a dd` (1:2).
//!
//! A 1:1 chunk is one teacher token spelling exactly one student token, after the same bytes:
//! the teacher's distribution at that position is a distribution over the student's next token
//! (its alternatives that are single student tokens), so it labels the student position as with
//! a shared tokenizer. Other chunks have no per-position teacher distribution; the shards stage
//! trains them on the hard label (issue #16 plans chunk-level events for them).

/// For each student token (by byte length), the teacher token (by byte length) that forms a
/// 1:1 chunk with it, if any. Both sequences must spell the same number of bytes; zero-length
/// tokens join the chunk they fall in (which is then not 1:1).
pub fn one_to_one(teacher_lens: &[usize], student_lens: &[usize]) -> Vec<Option<u32>> {
    let (nt, ns) = (teacher_lens.len(), student_lens.len());
    let mut out = vec![None; ns];
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
        loop {
            // Zero-length tokens at the boundary belong to this chunk.
            while t < nt && teacher_lens[t] == 0 {
                t += 1;
            }
            while s < ns && student_lens[s] == 0 {
                s += 1;
            }
            if t_end == s_end {
                break;
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
                break;
            }
        }
        if t - t_start == 1 && s - s_start == 1 && t_end == s_end {
            out[s_start] = Some(t_start as u32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::one_to_one;

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
}
