//! A reader of the protobuf wire format, for the one message that is worth
//! reading without building its structs: a ClusterLoadAssignment of
//! 100,000 endpoints decodes through prost's generated types into some
//! 500,000 allocations, most of them dropped at once.

use super::Invalid;

/// A field's value on the wire.
pub(super) enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed-width value or a group, not used by the fields read here.
    Fixed,
}

/// Walks the fields of one message.
pub(super) struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, Invalid> {
        // Keys and small values fit one byte.
        if let Some((&byte, rest)) = self.buf.split_first()
            && byte < 0x80
        {
            self.buf = rest;
            return Ok(u64::from(byte));
        }
        self.long_varint()
    }

    fn long_varint(&mut self) -> Result<u64, Invalid> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| "truncated varint".to_owned())?;
            self.buf = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than ten bytes".to_owned())
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], Invalid> {
        if n > self.buf.len() {
            return Err("truncated field".to_owned());
        }
        let (taken, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(taken)
    }

    /// The next field number and value, or `None` at the end.
    #[inline]
    pub(super) fn next_field(&mut self) -> Option<Result<(u32, Value<'a>), Invalid>> {
        if self.buf.is_empty() {
            return None;
        }
        Some(self.field())
    }

    #[inline]
    fn field(&mut self) -> Result<(u32, Value<'a>), Invalid> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| "field number out of range".to_owned())?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| "length out of range".to_owned())?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            3 => {
                self.skip_group(number)?;
                Value::Fixed
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        Ok((number, value))
    }

    /// Skips a group (wire type 3) through its end, as protobuf decoders
    /// skip unknown fields of any type: an unknown group must not make a
    /// valid message unreadable.
    fn skip_group(&mut self, number: u32) -> Result<(), Invalid> {
        // The groups open, innermost last; nesting is bounded as prost
        // bounds it.
        let mut open = vec![number];
        while let Some(&innermost) = open.last() {
            let key = self.varint()?;
            let inner =
                u32::try_from(key >> 3).map_err(|_| "field number out of range".to_owned())?;
            match key & 7 {
                0 => drop(self.varint()?),
                1 => drop(self.take(8)?),
                2 => {
                    let len = usize::try_from(self.varint()?)
                        .map_err(|_| "length out of range".to_owned())?;
                    self.take(len)?;
                }
                3 if open.len() < 100 => open.push(inner),
                3 => return Err("groups nested too deep".to_owned()),
                4 if inner == innermost => drop(open.pop()),
                4 => return Err(format!("group {innermost} ended as {inner}")),
                5 => drop(self.take(4)?),
                other => return Err(format!("unsupported wire type {other}")),
            }
        }
        Ok(())
    }
}

/// The `value` of a `google.protobuf.UInt32Value`.
pub(super) fn uint32_value(bytes: &[u8]) -> Result<u32, Invalid> {
    let mut value = 0;
    let mut fields = Fields::new(bytes);
    while let Some(field) = fields.next_field() {
        if let (1, Value::Varint(v)) = field? {
            value = v as u32;
        }
    }
    Ok(value)
}

/// A string field's text.
pub(super) fn text(bytes: &[u8]) -> Result<&str, Invalid> {
    std::str::from_utf8(bytes).map_err(|_| "string field is not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Field 1 (a varint), then an unknown group 7 holding a varint and
    /// a nested group, then field 2 (bytes).
    const WITH_GROUP: &[u8] = &[
        0x08, 0x05, // 1: 5
        0x3b, // 7: start group
        0x08, 0x01, // 1: 1
        0x13, 0x14, // 2: start group, end group
        0x3c, // 7: end group
        0x12, 0x01, b'x', // 2: "x"
    ];

    #[test]
    fn skips_unknown_groups() -> Result<(), Invalid> {
        let mut fields = Fields::new(WITH_GROUP);
        let mut read = Vec::new();
        while let Some(field) = fields.next_field() {
            match field? {
                (n, Value::Varint(v)) => read.push((n, v)),
                (n, Value::Bytes(b)) => read.push((n, b.len() as u64)),
                (_, Value::Fixed) => {}
            }
        }
        assert_eq!(read, vec![(1, 5), (2, 1)]);
        Ok(())
    }

    #[test]
    fn refuses_broken_groups() {
        for broken in [&[0x3b, 0x08][..], &[0x3b, 0x44], &[0x3c]] {
            let mut fields = Fields::new(broken);
            assert!(
                fields.next_field().is_some_and(|f| f.is_err()),
                "{broken:?}"
            );
        }
    }
}
