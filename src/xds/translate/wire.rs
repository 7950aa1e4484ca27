//! A reader of the protobuf wire format, for the one message that is worth
//! reading without building its structs: a ClusterLoadAssignment of
//! 100,000 endpoints decodes through prost's generated types into some
//! 500,000 allocations, most of them dropped at once.

use super::Invalid;

/// A field's value on the wire.
pub(super) enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed-width value, not used by the fields read here.
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
            other => return Err(format!("unsupported wire type {other}")),
        };
        Ok((number, value))
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
