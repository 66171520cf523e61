//! `wsgi.file_wrapper`: a file-like the server sends natively when it has a descriptor,
//! else iterates in blocks.

use pyo3::exceptions::PyStopIteration;
use pyo3::intern;
use pyo3::prelude::*;

use crate::http::body::ResponseBody;
use crate::http::response::file_body;

/// `wsgi.file_wrapper`: served from the file descriptor when the file-like has one.
#[pyclass(frozen, module = "granian._granian", name = "FileWrapper")]
pub struct FileWrapper {
    filelike: Py<PyAny>,
    blksize: usize,
}

impl FileWrapper {
    /// The rest of the file as a body read natively, when the file-like has a descriptor.
    pub fn native_body(&self, py: Python<'_>) -> Option<ResponseBody> {
        let filelike = self.filelike.bind(py);
        let fd: i32 = filelike.call_method0(intern!(py, "fileno")).ok()?.extract().ok()?;
        if fd < 0 {
            return None;
        }
        let position: u64 = filelike
            .call_method0(intern!(py, "tell"))
            .ok()
            .and_then(|p| p.extract().ok())
            .unwrap_or(0);
        // A duplicate, so the app closing its file does not pull the descriptor from under us.
        // SAFETY: `fd` is not negative (checked above) and the file-like object, alive for
        // the length of this borrow, says it is open; the borrow ends with the duplication.
        let owned = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .ok()?;
        let file = std::fs::File::from(owned);
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        let len = meta.len().saturating_sub(position);
        file_body(file, position, len).ok()
    }
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        Self {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let chunk = self
            .filelike
            .bind(py)
            .call_method1(intern!(py, "read"), (self.blksize,))?;
        if chunk.is_truthy()? {
            Ok(chunk.unbind())
        } else {
            Err(PyStopIteration::new_err(()))
        }
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(close) = self.filelike.bind(py).getattr_opt(intern!(py, "close"))? {
            close.call0()?;
        }
        Ok(())
    }
}
